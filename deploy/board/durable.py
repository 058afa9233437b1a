"""Board files a power cut leaves whole: written, removed and relinked durably (stdlib only, shipped with side.py)."""

from __future__ import annotations

import json
import os
from typing import Any


def fsync_dir(path: str) -> None:
    """Make a rename in this folder survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def relink(link: str, target: str) -> None:
    """Point `link` at `target` by renaming a fresh symlink over it: readers see the old or the new, never none."""
    tmp = f"{link}.tmp-{os.getpid()}"
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(os.path.dirname(link) or ".")


def write_durably(path: str, text: str) -> None:
    """Replace a file so that a power cut leaves the old or the new content, never a torn one."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


def remove_durably(path: str) -> None:
    """Remove a file and make the removal survive a power cut."""
    if os.path.exists(path):
        os.remove(path)
        fsync_dir(os.path.dirname(path))


def read_json(path: str) -> dict[str, Any] | None:
    """A JSON file's object, or None when it is missing or unreadable."""
    try:
        with open(path) as fh:
            value = json.load(fh)
        return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None
