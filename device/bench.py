"""Loop speed on the board, and its overhead over the bare cost of its parts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.atari import AtariGame
from device.model_choice import model_for
from device.play import require_game
from device.policy import Policy
from device.trust import load_trusted


@dataclass(frozen=True)
class BenchConfig:
    """What `python -m device bench` measures."""

    bundle: Path
    steps: int = 2000
    seed: int = 0
    threads: int | None = None
    int8: str = "auto"
    """auto (the board's self-test's choice), on, off: device/model_choice.py."""


def _loop(game: AtariGame, policy: Policy, steps: int) -> float:
    screen = game.reset()
    policy.reset()
    t0 = time.perf_counter()
    for _ in range(steps):
        if game.step(policy.act(screen)).done:
            game.reset()
            policy.reset()
    return time.perf_counter() - t0


def bench(cfg: BenchConfig) -> dict[str, Any]:
    """Time the full loop, then the emulator alone and the policy alone on the same frames."""
    bundle = Path(cfg.bundle).resolve()  # once, like play and selftest
    manifest = load_trusted(bundle)
    require_game(manifest)
    policy = Policy(bundle, manifest, cfg.threads, model_for(bundle, manifest, cfg.int8))
    game = AtariGame(manifest.env, manifest.action_ids)
    game.seed(cfg.seed)
    _loop(game, policy, 50)  # warm-up: first calls allocate arenas

    # Record the actions the loop takes, so the bare parts replay the same work.
    game.seed(cfg.seed)
    screen = game.reset()
    policy.reset()
    actions, screens = [], []
    for _ in range(cfg.steps):
        a = policy.act(screen)
        actions.append(a)
        screens.append(screen.copy())
        if game.step(a).done:
            screen = game.reset()
            policy.reset()

    rounds = {"loop": [], "emulator": [], "policy": []}
    for _ in range(3):
        game.seed(cfg.seed)
        rounds["loop"].append(_loop(game, policy, cfg.steps))
        game.seed(cfg.seed)
        game.reset()
        t0 = time.perf_counter()
        for a in actions:
            if game.step(a).done:
                game.reset()
        rounds["emulator"].append(time.perf_counter() - t0)
        policy.reset()
        t0 = time.perf_counter()
        for s in screens:
            policy.act(s)
        rounds["policy"].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in rounds.items()}
    parts = best["emulator"] + best["policy"]
    return {
        "steps": cfg.steps,
        "threads": cfg.threads or 1,
        "loop_steps_per_s": cfg.steps / best["loop"],
        "emulator_ms_per_step": best["emulator"] / cfg.steps * 1000,
        "policy_ms_per_call": best["policy"] / cfg.steps * 1000,
        "parts_steps_per_s": cfg.steps / parts,
        "overhead_pct": (best["loop"] / parts - 1.0) * 100.0,
        "model_file": policy.model_file,
        "frames_checksum": int(np.asarray(actions).sum()),
    }
