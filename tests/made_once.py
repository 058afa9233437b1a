"""What is expensive to make is made once per test run, whatever the number of pytest-xdist workers.

An export (seconds to a minute with its verification) or the board's venv (a minute of pip) is made by the first
worker that asks for it, under a file lock, into the run's shared folder; every other worker, and every later
test, waits for that lock and reuses the result. A result is only reused once its maker finished: a worker that
fails half-way leaves no `.done` mark, and the next one to ask makes it again from scratch.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from filelock import FileLock


def run_folder(tmp_path_factory) -> Path:  # noqa: ANN001
    """A folder every worker of this run sees, and no other run does.

    `make test` names one in EDGERL_MADE_ONCE for both of its pytest runs (the tests that run alone reuse what
    the others made) and empties it first; otherwise the xdist workers' common base, or this run's own.
    """
    named = os.environ.get("EDGERL_MADE_ONCE")
    base = tmp_path_factory.getbasetemp()
    folder = Path(named) if named else (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "made-once"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class MadeOnce:
    """Named results in one folder, each made at most once per run."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, name: str, make: Callable[[Path], object]) -> Path:
        """The folder `name`, made by `make(folder)` unless a worker of this run already finished it."""
        out, done = self.root / name, self.root / f"{name}.done"
        with FileLock(str(self.root / f"{name}.lock")):
            if not done.is_file():
                shutil.rmtree(out, ignore_errors=True)
                make(out)
                done.write_text("ok\n")
        return out


class LazyBundles(Mapping[str, Path]):
    """Bundles by name, each exported the first time a test asks for it (a test that needs none pays nothing)."""

    def __init__(self, made: MadeOnce, recipes: dict[str, Callable[[Path], object]]) -> None:
        self.made, self.recipes = made, recipes

    def __getitem__(self, name: str) -> Path:
        if name not in self.recipes:
            raise KeyError(name)
        return self.made.get(name, self.recipes[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self.recipes)

    def __len__(self) -> int:
        return len(self.recipes)
