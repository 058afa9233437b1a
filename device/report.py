"""The play report: what `python -m device play` writes on the board and `edgerl replay` / `edgerl run` read.

One JSON object per run (`REPORT_VERSION`); each episode carries the actions
taken (one byte each, hex) and a CRC-32 chain of every screen it showed, so
the host can rebuild the game and say where board and host parted.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from device.manifest import EdgerlError

REPORT_VERSION = 2
"""2: each episode carries a CRC-32 chain of its screens (ScreenChain)."""
READABLE_REPORT_VERSIONS = (1, 2)
CHAIN_EVERY = 100
REPORT_KEYS = ("report_version", "bundle_id", "seed", "episodes", "mean_score", "policy_latency", "machine")
"""Keys every readable report has; a newer edgerl may add more."""
EPISODE_KEYS = ("episode", "score", "steps", "terminated", "truncated", "actions_hex")


class ReportError(EdgerlError):
    """A report cannot be read, or is not a play report this edgerl understands."""


def screen_crc(screen: np.ndarray, running: int = 0) -> int:
    """The CRC-32 of one screen's bytes, continuing `running` (a chain) or from 0 (one screen, as a recording keeps)."""
    return zlib.crc32(memoryview(np.ascontiguousarray(screen)).cast("B"), running)


class ScreenChain:
    """A running CRC-32 over every screen of an episode, with checkpoints every CHAIN_EVERY steps.

    Two games with the same chain showed the same screens in the same order
    at every step, not just the same final score; `edgerl replay` rebuilds
    the chain on the host and names the first stretch where they part.
    """

    def __init__(self) -> None:
        self.crc, self.steps, self.marks = 0, -1, []

    def add(self, screen: np.ndarray) -> None:
        """Fold in the screen after a step (the first call takes the reset screen)."""
        self.crc = screen_crc(screen, self.crc)
        self.steps += 1
        if self.steps and self.steps % CHAIN_EVERY == 0:
            self.marks.append(f"{self.crc:08x}")

    def report(self) -> dict[str, Any]:
        """The report fields: final chain value and the checkpoints."""
        return {"screens_crc32": f"{self.crc:08x}", "screens_crc32_every": CHAIN_EVERY,
                "screens_crc32_marks": self.marks}


def episode_record(episode: int, score: float, actions: bytes, terminated: bool, truncated: bool,
                   chain: ScreenChain) -> dict[str, Any]:
    """One episode of the report."""
    return {"episode": episode, "score": score, "steps": len(actions), "terminated": terminated,
            "truncated": truncated, "actions_hex": bytes(actions).hex(), **chain.report()}


def replay_actions(episode: dict[str, Any]) -> list[int]:
    """The action indices of one reported episode."""
    return list(bytes.fromhex(episode["actions_hex"]))


def read_report(path: Path) -> dict[str, Any]:
    """Read and check a play report; one line naming the problem otherwise."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ReportError(f"cannot read report {path}: {err}") from err
    if not isinstance(report, dict) or report.get("report_version") not in READABLE_REPORT_VERSIONS:
        version = report.get("report_version") if isinstance(report, dict) else None
        raise ReportError(f"{path} is not a play report this edgerl reads (version {version!r}, readable "
                          f"{', '.join(map(str, READABLE_REPORT_VERSIONS))}); play it again with this edgerl")
    missing = [k for k in REPORT_KEYS if k not in report]
    missing += [f"episodes[{i}].{k}" for i, e in enumerate(report["episodes"]) for k in EPISODE_KEYS if k not in e]
    if missing:
        raise ReportError(f"report {path} lacks {', '.join(missing[:5])}; it was not written by `python -m device "
                          "play`")
    return report
