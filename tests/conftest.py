"""Shared fixtures: bundles exported once per session with the real exporter."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def _export(out: Path, kind: str, stochastic: bool = False, aoti: bool = False) -> Path:
    from host.export import ExportConfig, export_bundle

    return export_bundle(ExportConfig(out=out, untrained=True, kind=kind, stochastic=stochastic, aoti=aoti),
                         say=lambda _: None)


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """One deterministic bundle per policy kind, plus a stochastic dqn (exported once)."""
    root = tmp_path_factory.mktemp("bundles")
    made = {kind: _export(root / kind, kind) for kind in ("dqn", "stacked", "lstm")}
    made["dqn-stochastic"] = _export(root / "dqn-stochastic", "dqn", stochastic=True)
    return made


@pytest.fixture
def bundle_copy(bundles, tmp_path):
    """A private copy of a bundle that a test may damage."""

    def copy(kind: str = "dqn") -> Path:
        dest = tmp_path / f"copy-{kind}"
        shutil.copytree(bundles[kind], dest)
        return dest

    return copy


REPO = Path(__file__).resolve().parents[1]
OWN_POLICIES = ("breakout_stacked", "invaders_actor")
"""Policies edgerl has never seen (examples/): other games, other networks, frame stacks, one-hot actions."""


def export_from(factory: str, out: Path, *extra: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "host.cli", "export", "--from", factory, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=900, cwd=REPO)


@pytest.fixture(scope="session")
def own_bundles(tmp_path_factory) -> dict[str, Path]:
    """Each of the user-style example policies, exported once through the CLI with every backend."""
    root = tmp_path_factory.mktemp("own")
    made = {}
    for name in (*OWN_POLICIES, "tutorial_lstm"):
        run = export_from(f"examples/{name}.py:make", root / name)
        assert run.returncode == 0, run.stdout + run.stderr
        made[name] = root / name
    return made
