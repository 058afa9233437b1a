"""Play episodes on the board and measure how: the report the host gets back."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.atari import AtariGame
from device.manifest import BundleError, EdgerlError, Manifest, write_json_atomic
from device.model_choice import model_for
from device.policy import Policy
from device.record import RecordConfig, Recorder
from device.report import REPORT_VERSION, ScreenChain, episode_record, screen_crc
from device.trust import load_trusted


@dataclass(frozen=True)
class PlayConfig:
    """What `python -m device play` does."""

    bundle: Path
    episodes: int = 1
    seed: int = 0
    max_steps: int | None = None
    """Stop an episode after this many agent steps (it is then marked truncated)."""
    threads: int | None = None
    int8: str = "auto"
    """auto (the board's self-test's choice), on, off: device/model_choice.py."""
    report: Path | None = None
    record: Path | None = None
    """Record every decision into this folder (device/record.py)."""


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


def require_game(manifest: Manifest) -> None:
    """Refuse, in one line, a bundle that has no game to play."""
    if manifest.env is None:
        raise BundleError("this bundle has no game to play (its policy reads your own sensors); run it in your "
                          "loop with `from device import Policy`, and check it with `python -m device selftest`")


@dataclass
class _Timing:
    policy: list[float] = field(default_factory=list)
    emulator: list[float] = field(default_factory=list)
    first_action: float | None = None
    """perf_counter() when the first action was chosen: what a cold start costs."""


def game_run(manifest: Manifest, seed: int, mode: str, model_file: str | None = None) -> dict[str, Any]:
    """What a game recording needs to regenerate its screens, and the model that chose its actions.

    The bundle, the game's settings, the seed; int8 or fp32, as the board's self-test picked (device/model_choice.py).
    """
    return {"kind": "game", "mode": mode, "bundle_id": manifest.bundle_id, "env": manifest.to_dict()["env"],
            "action_ids": manifest.action_ids, "seed": seed, "model_file": model_file or manifest.model_file,
            "env_observations": manifest.provenance.get("env_observations") or {}}


def game_decision(episode: int, action: int, reward: float, terminated: bool, truncated: bool,
                  screen: np.ndarray) -> dict[str, Any]:
    """One recorded step of a game: the screen it led to by its CRC-32 only."""
    return {"episode": episode, "action": action, "reward": np.float32(reward), "terminated": terminated,
            "truncated": truncated, "screen_crc32": np.uint32(screen_crc(screen))}


def _play_episode(game: AtariGame, policy: Policy, episode: int, max_steps: int | None, timing: _Timing,
                  recorder: Recorder | None = None) -> dict[str, Any]:
    """One episode from the game's reset to its end (or `max_steps`), timing policy and emulator per step."""
    clock = time.perf_counter
    screen = game.reset()
    policy.reset()
    chain = ScreenChain()
    chain.add(screen)
    actions = bytearray()
    score, result = 0.0, None
    while True:
        t0 = clock()
        index = policy.act(screen)
        t1 = clock()
        result = game.step(index)
        timing.policy.append(t1 - t0)
        timing.emulator.append(clock() - t1)
        if timing.first_action is None:
            timing.first_action = t1
        chain.add(game.screen)
        actions.append(index)
        score += result.reward
        cut = bool(max_steps and len(actions) >= max_steps)
        if recorder is not None:
            recorder.add(game_decision(episode, index, result.reward, result.terminated,
                                       result.truncated or (cut and not result.done), game.screen))
        if result.done or cut:
            break
    return episode_record(episode, score, bytes(actions), result.terminated, result.truncated or not result.done,
                          chain)


def play(cfg: PlayConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Play `cfg.episodes` episodes from one seed and return the report (also written if asked)."""
    started = time.perf_counter()
    bundle = Path(cfg.bundle).resolve()  # once: a `current` link flipped meanwhile cannot mix two releases
    manifest = load_trusted(bundle)
    require_game(manifest)
    _seed_sampling(cfg.seed)
    policy = Policy(bundle, manifest, cfg.threads, model_for(bundle, manifest, cfg.int8))
    game = AtariGame(manifest.env, manifest.action_ids, seed=cfg.seed)
    timing = _Timing()
    episodes = []
    recorder = Recorder(RecordConfig(cfg.record), game_run(manifest, cfg.seed, "play", policy.model_file)) \
        if cfg.record else None
    if progress:
        progress(f"playing {manifest.bundle_id} ({policy.model_file}) from {bundle.parent.name}, seed {cfg.seed}")
    loop_started = time.perf_counter()
    try:
        for episode in range(cfg.episodes):
            episodes.append(_play_episode(game, policy, episode, cfg.max_steps, timing, recorder))
            if progress:
                e = episodes[-1]
                progress(f"episode {episode + 1}/{cfg.episodes}: score {e['score']:+.0f} in {e['steps']} steps")
    finally:
        if recorder is not None:
            recorder.close()
    report = _report(cfg, manifest, episodes, timing, time.perf_counter() - loop_started)
    report["model_file"] = policy.model_file
    report["cold_start_s"] = None if timing.first_action is None else timing.first_action - started
    if recorder is not None:
        report["recording"] = recorder.figures()
    if cfg.report:
        try:
            write_json_atomic(cfg.report, report)
        except OSError as err:
            raise PlayError(f"cannot write the report {cfg.report}: {err.strerror or err}; free space on the "
                            "board (or pass another --report path) and play again") from None
    return report


def _report(cfg: PlayConfig, manifest: Manifest, episodes: list[dict[str, Any]], timing: _Timing, wall_s: float
            ) -> dict[str, Any]:
    total_steps = sum(e["steps"] for e in episodes)
    loop_s = sum(timing.policy) + sum(timing.emulator)
    return {
        "report_version": REPORT_VERSION,
        "bundle_id": manifest.bundle_id,
        "files": manifest.files,
        "env": manifest.to_dict()["env"],
        "action_ids": manifest.action_ids,
        "seed": cfg.seed,
        "max_steps": cfg.max_steps,
        "threads": cfg.threads or 1,
        "episodes": episodes,
        "mean_score": float(np.mean([e["score"] for e in episodes])),
        "steps": total_steps,
        "steps_per_s": total_steps / max(wall_s, 1e-9),
        "loop_steps_per_s": total_steps / loop_s if loop_s else 0.0,
        "policy_latency": _percentiles(timing.policy),
        "emulator_ms_per_step": float(np.mean(timing.emulator) * 1000.0) if timing.emulator else 0.0,
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine_info(),
    }
