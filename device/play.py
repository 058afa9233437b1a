"""Play episodes on the board and measure how: the report the host gets back."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.atari import AtariGame
from device.manifest import BundleError, EdgerlError, Manifest, load_bundle, write_json_atomic
from device.policy import Policy, model_file

REPORT_VERSION = 2
"""2: each episode carries a CRC-32 chain of its screens (ScreenChain)."""
CHAIN_EVERY = 100


@dataclass(frozen=True)
class PlayConfig:
    """What `python -m device play` does."""

    bundle: Path
    episodes: int = 1
    seed: int = 0
    max_steps: int | None = None
    """Stop an episode after this many agent steps (it is then marked truncated)."""
    threads: int | None = None
    int8: bool = False
    report: Path | None = None


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    """Current resident set size, from /proc where there is one."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except OSError:
        return peak_rss_mb()


def machine_info() -> dict[str, Any]:
    """Where the report was made: architecture, CPUs, library versions."""
    import ale_py
    import onnxruntime

    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "ale_py": getattr(ale_py, "__version__", "unknown"),
    }


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0}
    arr = np.asarray(samples) * 1000.0
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "max_ms": float(arr.max()),
        "mean_ms": float(arr.mean()),
    }


def _seed_sampling(seed: int) -> None:
    """Seed onnxruntime's random ops, so a stochastic policy plays the same game for the same --seed."""
    import onnxruntime

    onnxruntime.set_seed(int(seed))


class PlayError(EdgerlError):
    """The game was played but its report cannot be written."""


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
        self.crc = zlib.crc32(memoryview(np.ascontiguousarray(screen)).cast("B"), self.crc)
        self.steps += 1
        if self.steps and self.steps % CHAIN_EVERY == 0:
            self.marks.append(f"{self.crc:08x}")

    def report(self) -> dict[str, Any]:
        """The report fields: final chain value and the checkpoints."""
        return {"screens_crc32": f"{self.crc:08x}", "screens_crc32_every": CHAIN_EVERY,
                "screens_crc32_marks": self.marks}


def require_game(manifest: Manifest) -> None:
    """Refuse, in one line, a bundle that has no game to play."""
    if manifest.env is None:
        raise BundleError("this bundle has no game to play (its policy reads your own sensors); run it in your "
                          "loop with `from device import Policy`, and check it with `python -m device selftest`")


def play(cfg: PlayConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Play `cfg.episodes` episodes from one seed and return the report (also written if asked)."""
    started = time.perf_counter()
    bundle = Path(cfg.bundle).resolve()  # once: a `current` link flipped meanwhile cannot mix two releases
    manifest = load_bundle(bundle)
    require_game(manifest)
    _seed_sampling(cfg.seed)
    policy = Policy(bundle, manifest, cfg.threads, model_file(manifest, cfg.int8))
    game = AtariGame(manifest.env, manifest.action_ids)
    game.seed(cfg.seed)
    latencies: list[float] = []
    emulator: list[float] = []
    episodes = []
    first_action_s = None
    clock = time.perf_counter
    loop_started = clock()
    for episode in range(cfg.episodes):
        screen = game.reset()
        policy.reset()
        chain = ScreenChain()
        chain.add(screen)
        actions = bytearray()
        score, steps, result = 0.0, 0, None
        while True:
            t0 = clock()
            index = policy.act(screen)
            t1 = clock()
            result = game.step(index)
            t2 = clock()
            if first_action_s is None:
                first_action_s = t1 - started
            latencies.append(t1 - t0)
            emulator.append(t2 - t1)
            chain.add(game.screen)
            actions.append(index)
            score += result.reward
            steps += 1
            if result.done or (cfg.max_steps and steps >= cfg.max_steps):
                break
        episodes.append(
            {
                "episode": episode,
                "score": score,
                "steps": steps,
                "terminated": result.terminated,
                "truncated": result.truncated or not result.done,
                # One byte per action, hex: a whole Pong game is a few KB.
                "actions_hex": bytes(actions).hex(),
                **chain.report(),
            }
        )
        if progress:
            progress(f"episode {episode + 1}/{cfg.episodes}: score {score:+.0f} in {steps} steps")
    total_steps = sum(e["steps"] for e in episodes)
    loop_s = sum(latencies) + sum(emulator)
    report = {
        "report_version": REPORT_VERSION,
        "bundle_id": manifest.bundle_id,
        "files": manifest.files,
        "model_file": model_file(manifest, cfg.int8),
        "env": manifest.to_dict()["env"],
        "action_ids": manifest.action_ids,
        "seed": cfg.seed,
        "max_steps": cfg.max_steps,
        "threads": cfg.threads or 1,
        "episodes": episodes,
        "mean_score": float(np.mean([e["score"] for e in episodes])),
        "steps": total_steps,
        "steps_per_s": total_steps / max(clock() - loop_started, 1e-9),
        "loop_steps_per_s": total_steps / loop_s if loop_s else 0.0,
        "policy_latency": _percentiles(latencies),
        "emulator_ms_per_step": float(np.mean(emulator) * 1000.0) if emulator else 0.0,
        "cold_start_s": first_action_s,
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine_info(),
    }
    if cfg.report:
        try:
            write_json_atomic(cfg.report, report)
        except OSError as err:
            raise PlayError(f"cannot write the report {cfg.report}: {err.strerror or err}; free space on the "
                            "board (or pass another --report path) and play again") from None
    return report


def replay_actions(episode: dict[str, Any]) -> list[int]:
    """The action indices of one reported episode."""
    return list(bytes.fromhex(episode["actions_hex"]))
