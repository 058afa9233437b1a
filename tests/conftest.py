"""Shared fixtures: bundles exported with the real exporter, each once per test run and only when a test asks."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from made_once import LazyBundles, MadeOnce, run_folder  # noqa: E402
from tests_own import OWN_POLICIES, SECOND_ROUND, export_flags, export_from  # noqa: E402


def _export(out: Path, kind: str, stochastic: bool = False) -> Path:
    from host.bundle.pipeline import ExportConfig, export_bundle

    # 200 steps of the export's own verification: the tests that judge parity verify these bundles over 1000
    # (tests/host/bundle/test_export.py), so the fixture need not do it a second time.
    return export_bundle(ExportConfig(out=out, untrained=True, network=kind, stochastic=stochastic, aoti=False,
                                      verify_steps=200), say=lambda _: None)


@pytest.fixture(scope="session")
def made_once(tmp_path_factory) -> MadeOnce:
    """This run's results that every pytest-xdist worker shares."""
    return MadeOnce(run_folder(tmp_path_factory))


@pytest.fixture(scope="session")
def bundles(made_once) -> LazyBundles:
    """One deterministic bundle per built-in network, plus a stochastic dqn."""
    recipes = {kind: partial(_export, kind=kind) for kind in ("dqn", "stacked", "lstm")}
    recipes["dqn-stochastic"] = partial(_export, kind="dqn", stochastic=True)
    return LazyBundles(made_once, recipes)


@pytest.fixture
def bundle_copy(bundles, tmp_path):
    """A private copy of a bundle that a test may damage."""

    def copy(kind: str = "dqn") -> Path:
        dest = tmp_path / f"copy-{kind}"
        shutil.copytree(bundles[kind], dest)
        return dest

    return copy




@dataclass(frozen=True)
class DeviceVenv:
    """The board's device venv (numpy, onnxruntime, ale-py: no torch), installed once per run by a real deploy."""

    venvs: Path
    """The venvs/ folder every test board links to (boards of a run share it; no real board does)."""
    key: str

    @property
    def python(self) -> Path:
        return self.venvs / self.key / "bin" / "python"


def _install_device_venv(out: Path, bundle: Path) -> None:
    from deploy.link.targets import LocalTarget
    from deploy.release import DeployConfig, deploy

    board = out / "board"
    board.mkdir(parents=True)
    (out / "venvs").mkdir()
    (board / "venvs").symlink_to(out / "venvs")
    (out / "key").write_text(deploy(LocalTarget(str(board)), DeployConfig(bundle), say=lambda _: None).venv)


@pytest.fixture(scope="session")
def device_venv(made_once, bundles) -> DeviceVenv:
    """Installed before any test deploys, so two xdist workers' first deploys never build it at once."""
    out = made_once.get("device-venv", partial(_install_device_venv, bundle=bundles["dqn"]))
    return DeviceVenv(out / "venvs", (out / "key").read_text())


@pytest.fixture(scope="session")
def board_python(device_venv, tmp_path_factory):
    """Runs the board's venv (what a deploy installs: numpy, onnxruntime, ale-py) on a release's code: device/ alone."""
    code = tmp_path_factory.mktemp("release-code")
    shutil.copytree(Path(__file__).resolve().parents[1] / "device", code / "device",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(code)}

    def run(*args: object, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([str(device_venv.python), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                              env=env, timeout=300)

    return run


def _export_own(out: Path, name: str, extra: tuple[str, ...] = ()) -> None:
    run = export_from(f"examples/{name}.py:make", out, *extra)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.fixture(scope="session")
def own_bundles(made_once) -> LazyBundles:
    """Each of the user-style example policies, exported through the CLI as a user would."""
    names = (*OWN_POLICIES, "tutorial_lstm", *SECOND_ROUND)
    return LazyBundles(made_once, {name: partial(_export_own, name=name, extra=export_flags(name))
                                   for name in names})


@pytest.fixture(scope="session")
def cart_bundle(made_once) -> Path:
    """examples/cart_service.py's sensor policy (a PD law as a TorchRL actor), exported as a user would."""
    return made_once.get("cart", partial(_export_own, name="cart_service", extra=("--no-aoti",)))


def pytest_configure(config) -> None:
    """Under pytest-xdist each worker computes with one thread: two workers already fill the 2 cores, and a torch
    (or OpenMP) pool of two threads per worker only makes them wait on each other."""
    if config.getoption("dist", "no") == "loadgroup" and not _groups_kept():
        pytest.exit("pytest 9.2 and later with pytest-xdist 3.8 ignore --dist loadgroup (the fleet's tests would split "
                    "over the workers, each building its own boards): reinstall with `make venv`, which pins "
                    "pytest<9.2", returncode=4)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"  # the worker's subprocesses (tutorial scripts, edgerl) too
        import torch

        torch.set_num_threads(1)


def _groups_kept() -> bool:
    """pytest 9.2 builds Item.nodeid from its own id, and pytest-xdist 3.8 groups by renaming _nodeid."""
    xdist = tuple(int(n) for n in importlib.metadata.version("pytest-xdist").split(".")[:2])
    return pytest.version_tuple[:2] < (9, 2) or xdist > (3, 8)


def pytest_collection_modifyitems(config, items) -> None:
    """Under pytest-xdist, the fleet's file goes first: it is the longest piece one worker must run whole (twelve
    boards shared by its tests), and a long piece started last would leave the other worker idle at the end."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' order is the one the scheduler hands out
        items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)

