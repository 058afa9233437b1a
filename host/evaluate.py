"""Evaluate a run the way the board will play it: export, then the device loop, deterministic."""

from __future__ import annotations

import tempfile
from pathlib import Path

from device.play import PlayConfig, play
from host.export import ExportConfig, export_bundle


def evaluate_run(run: Path, episodes: int, seed: int = 100, max_steps: int | None = None) -> list[float]:
    """Scores of `episodes` games, one per seed (seed, seed+1, ...), played by the device loop on the checkpoint."""
    with tempfile.TemporaryDirectory(prefix="edgerl-eval-") as tmp:
        bundle = export_bundle(ExportConfig(out=Path(tmp) / "bundle", source=run, aoti=False), say=lambda _: None)
        return evaluate_bundle(bundle, episodes, seed, max_steps)


def evaluate_bundle(bundle: Path, episodes: int, seed: int = 100, max_steps: int | None = None) -> list[float]:
    """Scores of one deterministic game per seed on the device loop."""
    return [play(PlayConfig(bundle, episodes=1, seed=seed + i, max_steps=max_steps))["episodes"][0]["score"]
            for i in range(episodes)]
