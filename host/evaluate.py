"""Evaluate a run the way the board will play it: export, then the device loop, deterministic."""

from __future__ import annotations

import tempfile
from pathlib import Path

from device.play import PlayConfig, play
from host.export import ExportConfig, export_bundle


def evaluate_run(run: Path, episodes: int, seed: int = 100, max_steps: int | None = None) -> list[float]:
    """Scores of `episodes` games played by `python -m device play` semantics on the run's checkpoint."""
    with tempfile.TemporaryDirectory(prefix="edgerl-eval-") as tmp:
        bundle = export_bundle(ExportConfig(out=Path(tmp) / "bundle", source=run, aoti=False), say=lambda _: None)
        report = play(PlayConfig(bundle, episodes=episodes, seed=seed, max_steps=max_steps))
    return [e["score"] for e in report["episodes"]]
