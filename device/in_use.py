"""A deployed release that a process runs from is never pruned while it runs.

Every process that loads a bundle from a deployed release (play, serve, bench, selftest, `Policy.load` in a user's
loop) holds a shared flock on the release's `.in-use` file for its lifetime; the board's prune
(deploy/board/side.py) removes a release only while it holds that lock exclusively, so it skips one in use, and a
process that arrives while a release is being removed waits, then finds it gone and says so. The kernel drops a
lock with its process, however that ends: nothing is left to clean.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from device.layout import IN_USE, SUMS
from device.manifest import BundleError

_HELD: dict[str, int] = {}
"""Releases this process holds, by folder: held until it exits."""


def release_of(bundle: Path) -> Path | None:
    """The deployed release folder a bundle is in (it holds the release's SHA256SUMS), or None for a host's bundle."""
    release = Path(bundle).resolve().parent
    return release if (release / SUMS).is_file() else None


def hold(bundle: Path) -> None:
    """Hold the release a bundle belongs to, if it is a deployed release's (a host's bundle folder is left alone)."""
    release = release_of(bundle)
    if release is None or str(release) in _HELD:
        return
    try:
        fd = os.open(release / IN_USE, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:  # a read-only card: no deploy can prune it either
        return
    fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a prune is removing this very release
    if not (release / SUMS).is_file():
        os.close(fd)
        raise BundleError(f"{release.name} was pruned by a deploy as this started; run it again (current names the "
                          "board's newest release)")
    _HELD[str(release)] = fd
