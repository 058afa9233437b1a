"""Disks that fill up: a tmpfs of a few KB or MB (or a few inodes) mounted for one test; root only."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(path: Path, options: str, who: str) -> Iterator[Path]:
    """`path` as a tmpfs mounted with `options` (size=, nr_inodes=) for the `with` block; `who` is the test."""
    path.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.fail(f"{who} mounts a small tmpfs and needs root: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def read_only_view(folder: Path, view: Path, who: str) -> Iterator[Path]:
    """`folder` seen read-only at `view` for the `with` block, as a card the kernel remounted read-only; root only.

    A bind mount of its own, so no file another process holds open for writing keeps it from going read-only.
    """
    view.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(view)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{who} bind-mounts a folder read-only and needs root: {done.stderr.strip()}")
    try:
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)
