"""Evaluate a policy the way the board will play it: the device loop, deterministic, one game per seed."""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.manifest import load_bundle, write_manifest
from device.play import PlayConfig, play
from host.bundle.pipeline import ExportConfig, export_bundle


@dataclass(frozen=True)
class EvaluateConfig:
    """What `edgerl evaluate` plays."""

    bundle: Path
    episodes: int = 10
    """Games, one per seed: seed, seed+1, ..."""
    seed: int = 100
    """First seed, fed to the device loop's `AtariGame.seed` as `python -m device play --seed` does (the PQN
    trainer seeds its games by `episode_seed`, raw ALE seeds of another derivation, so these are not its games)."""
    max_steps: int | None = None
    """Cut each game after this many agent steps (tests); a full Pong game is at most 27,000."""


def evaluate_run(run: Path, episodes: int, seed: int = 100, max_steps: int | None = None) -> list[float]:
    """Scores of `episodes` games, one per seed (seed, seed+1, ...), played by the device loop on the checkpoint."""
    with tempfile.TemporaryDirectory(prefix="edgerl-eval-") as tmp:
        bundle = export_bundle(ExportConfig(out=Path(tmp) / "bundle", source=run, aoti=False), say=lambda _: None)
        return evaluate_bundle(bundle, episodes, seed, max_steps)


def evaluate_bundle(bundle: Path, episodes: int, seed: int = 100, max_steps: int | None = None,
                    on_game: Callable[[int, dict[str, Any]], None] | None = None) -> list[float]:
    """Scores of one deterministic game per seed on the device loop."""
    scores = []
    for i in range(episodes):
        game = play(PlayConfig(bundle, episodes=1, seed=seed + i, max_steps=max_steps))["episodes"][0]
        scores.append(game["score"])
        if on_game:
            on_game(seed + i, game)
    return scores


def record_evaluation(cfg: EvaluateConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Play cfg.episodes games on the device loop and write the scores into the bundle's manifest."""
    manifest = load_bundle(cfg.bundle)  # refuses a tampered bundle before spending time on it
    started = time.perf_counter()

    def report(seed: int, game: dict[str, Any]) -> None:
        say(f"  seed {seed}: score {game['score']:+.0f} in {game['steps']} steps")

    scores = evaluate_bundle(cfg.bundle, cfg.episodes, cfg.seed, cfg.max_steps, on_game=report)
    figures = {
        "player": "device loop (python -m device play), deterministic, fp32",
        "episodes": cfg.episodes,
        "seeds": [cfg.seed + i for i in range(cfg.episodes)],
        "scores": scores,
        "mean": sum(scores) / len(scores),
        "min": min(scores),
        "max_steps": cfg.max_steps,
        "env": manifest.env.__dict__,
        "machine": platform.machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest.provenance["evaluation"] = figures  # playing reads the bundle, never writes it
    write_manifest(cfg.bundle, manifest)
    return figures
