"""The board's deploy lock: a flock on `.deploy.lock`, its holder's name written in it (stdlib only).

Taken by a push's holder (side.py's hold-lock, fed by the host) and by the pull agent around its poll, so a push and
a pull never interleave; the kernel frees it with its holder's last descriptor, so a dead one leaves none behind.
"""

from __future__ import annotations

import fcntl
import os

from device.layout import DEPLOY_LOCK


def try_lock(fd: int) -> bool:
    """Take the flock on an open file without waiting; False when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def is_locked(root: str) -> bool:
    """Whether a deploy holds the board's lock now (a lock file left by a dead one is not held)."""
    path = os.path.join(root, DEPLOY_LOCK)
    if not os.path.exists(path):
        return False
    fd = os.open(path, os.O_RDONLY)
    free = try_lock(fd)
    os.close(fd)
    return not free


def take_lock(root: str, owner: str) -> int | None:
    """The board's deploy lock, its owner written: the descriptor it lives as long as, or None when held."""
    os.makedirs(root, exist_ok=True)
    fd = os.open(os.path.join(root, DEPLOY_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    if not try_lock(fd):
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, owner.encode())
    return fd
