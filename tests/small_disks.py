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
