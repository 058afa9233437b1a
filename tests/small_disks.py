"""Disks that fill up: a tmpfs of a few KB or MB (or a few inodes) mounted for one test; root only."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def _mounted(argv: list[str], path: Path, needs: str) -> Iterator[Path]:
    """`mount ARGV... PATH` for the `with` block, lazily unmounted after; `needs` says which test failed to mount."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *argv, str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{needs} and needs root: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def small_tmpfs(path: Path, options: str, who: str) -> contextlib.AbstractContextManager[Path]:
    """`path` as a tmpfs mounted with `options` (size=, nr_inodes=) for the `with` block; `who` is the test."""
    return _mounted(["-t", "tmpfs", "-o", options, "tmpfs"], path, f"{who} mounts a small tmpfs")


def read_only_view(folder: Path, view: Path, who: str) -> contextlib.AbstractContextManager[Path]:
    """`folder` seen read-only at `view` for the `with` block, as a card the kernel remounted read-only; root only.

    A bind mount of its own, so no file another process holds open for writing keeps it from going read-only.
    """
    return _mounted(["--bind", "-o", "ro", str(folder)], view, f"{who} bind-mounts a folder read-only")
