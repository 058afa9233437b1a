"""`edgerl replay`: rebuild a board's game on the host from the report's seed and actions.

The replay runs on the host's TorchRL env (the one training uses), so a
replay whose scores equal the reported ones is also a check that board and
host played the same game.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from device.manifest import BundleError, EdgerlError, load_bundle
from device.report import ScreenChain, read_report, replay_actions
from host.envs import make_base_env


class ReplayError(EdgerlError):
    """The report cannot be replayed, or replays to other scores."""

    exit_code = 1


@dataclass(frozen=True)
class ReplayConfig:
    """What `edgerl replay` rebuilds."""

    report: Path
    bundle: Path
    out: Path | None = None
    """Animated GIF to write (every `stride`-th agent step of every episode)."""
    stride: int = 2
    fps: int = 30


def replay(cfg: ReplayConfig, say: Callable[[str], None] = print) -> list[float]:
    """Replay every episode; return the replayed scores; raise ReplayError if they differ."""
    report = read_report(cfg.report)
    manifest = load_bundle(cfg.bundle)
    if report.get("bundle_id") != manifest.bundle_id:
        raise BundleError(f"report was played with bundle {report.get('bundle_id')}, not {manifest.bundle_id}; "
                          "pass the bundle the board played")
    env = make_base_env(manifest.env)
    env.set_seed(int(report["seed"]))
    frames: list[np.ndarray] = []
    scores = []
    for episode in report["episodes"]:
        td = env.reset()
        chain = ScreenChain()
        chain.add(td["pixels"].numpy())
        score = 0.0
        for step, action in enumerate(replay_actions(episode)):
            if cfg.out and step % cfg.stride == 0:
                frames.append(td["pixels"].numpy().copy())
            td["action"] = torch.tensor(action)
            td = env.step(td)["next"]
            chain.add(td["pixels"].numpy())
            score += td["reward"].item()
        scores.append(score)
        say(f"episode {episode['episode']}: replayed {score:+.0f}, reported {episode['score']:+.0f}")
        _compare_screens(episode, chain.report())
    env.close()
    if cfg.out:
        _write_gif(frames, Path(cfg.out), cfg.fps)
        say(f"wrote {len(frames)} frames to {cfg.out}")
    reported = [e["score"] for e in report["episodes"]]
    if scores != reported:
        raise ReplayError(f"replayed scores {scores} differ from reported {reported}: "
                          "board and host did not play the same game")
    return scores


def _compare_screens(episode: dict[str, Any], replayed: dict[str, Any]) -> None:
    """Every screen of the episode, not only its score: the CRC chains must agree (reports of version 2 on)."""
    if "screens_crc32" not in episode:
        return  # an older board's report: scores only
    if replayed["screens_crc32"] == episode["screens_crc32"]:
        return
    every = episode["screens_crc32_every"]
    marks = zip(episode["screens_crc32_marks"], replayed["screens_crc32_marks"], strict=False)
    first = next((i for i, (a, b) in enumerate(marks) if a != b), len(episode["screens_crc32_marks"]))
    raise ReplayError(f"episode {episode['episode']}: the screens differ from agent step {first * every} on "
                      f"(before step {(first + 1) * every}): board and host did not play the same game")


def _write_gif(frames: list[np.ndarray], out: Path, fps: int) -> None:
    from PIL import Image

    if not frames:
        raise ReplayError("the report has no steps to draw")
    out.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    tmp = out.with_name(f".{out.name}.partial")
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    tmp.replace(out)
