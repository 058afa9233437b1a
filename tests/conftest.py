"""Shared fixtures: bundles exported once per session with the real exporter."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


def _export(out: Path, kind: str, stochastic: bool = False, aoti: bool = False) -> Path:
    from host.bundle.pipeline import ExportConfig, export_bundle

    return export_bundle(ExportConfig(out=out, untrained=True, network=kind, stochastic=stochastic, aoti=aoti),
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



sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests_own import OWN_POLICIES, SECOND_ROUND, export_from  # noqa: E402


@pytest.fixture(scope="session")
def own_bundles(tmp_path_factory) -> dict[str, Path]:
    """Each of the user-style example policies, exported once through the CLI with every backend."""
    root = tmp_path_factory.mktemp("own")
    made = {}
    for name in (*OWN_POLICIES, "tutorial_lstm", *SECOND_ROUND):
        run = export_from(f"examples/{name}.py:make", root / name)
        assert run.returncode == 0, run.stdout + run.stderr
        made[name] = root / name
    return made


@pytest.fixture(scope="session")
def cart_bundle(tmp_path_factory) -> Path:
    """examples/cart_service.py's sensor policy (a PD law as a TorchRL actor), exported as a user would."""
    out = tmp_path_factory.mktemp("cart") / "bundle"
    run = export_from("examples/cart_service.py:make", out, "--no-aoti")
    assert run.returncode == 0, run.stdout + run.stderr
    return out
