"""The name of a venv on the board: one per dependency set and kind of board, shared by every release that needs it.

Computed alike by a host that pushes (`deploy/install.py`) and by a board that pulls (`deploy/agent/`), so both
find the venv the other made.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys


def venv_key(requirements: list[str], machine: str, python: str) -> str:
    """The venv's folder name under venvs/ for these requirements on this kind of board."""
    text = json.dumps([sorted(requirements), machine, python])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def this_board() -> tuple[str, str]:
    """(machine, 'major.minor' of python3): what a venv key is made of, as the board itself says it."""
    return platform.machine(), "{}.{}".format(*sys.version_info[:2])
