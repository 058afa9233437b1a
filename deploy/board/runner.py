"""How the board module's ops are run: argv in, one JSON reply line out (stdlib only, Python 3.9+).

    {"ok": true, ...}  or  {"ok": false, "error": "<one line>", ...}

Exit status: 0 when the op answered (refusals included), 2 for a wrong
command line, 1 for an unexpected crash (its traceback on stderr).
"""

from __future__ import annotations

import errno
import inspect
import json
import os
import sys
from collections.abc import Callable
from typing import Any

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class Refused(Exception):
    """The op ran and says no: its message (and fields) go into the reply."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.fields = fields


def emit(reply: dict[str, Any]) -> None:
    """Write one reply line."""
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


def space(root: str) -> dict[str, int]:
    """Free bytes and free inodes where the board folder lives."""
    st = os.statvfs(root)
    return {"free_bytes": st.f_bavail * st.f_frsize, "free_inodes": st.f_favail}


def _no_space(err: OSError, args: list[str]) -> dict[str, Any]:
    where = next((a for a in args if os.path.isabs(a) and os.path.exists(a)), None)
    figures = space(where) if where else {}
    return {"ok": False, "error": f"no space left on the board ({err.strerror or err})", "no_space": True,
            **figures}


def read_only(err: OSError) -> str:
    """The one line for a write the board's filesystem refused as read-only (a push's op, the pull agent's poll)."""
    return (f"the board's filesystem is read-only ({err.filename}): an SD card that failed goes read-only; check the "
            "board's `dmesg`, then remount it or replace the card")


def run_op(ops: dict[str, Callable[..., Any]], args: list[str]) -> int:
    """Run the op `args[0]` names with the rest as its arguments; print its one-line JSON reply."""
    op = ops.get(args[0]) if args else None
    if op is None:
        emit({"ok": False, "error": "usage: OP ARG... with OP one of " + ", ".join(sorted(ops))})
        return 2
    try:
        inspect.signature(op).bind(*args[1:])
    except TypeError as err:
        emit({"ok": False, "error": f"{args[0]}: {err}"})
        return 2
    try:
        reply = op(*args[1:])
    except Refused as refusal:
        reply = {"ok": False, "error": str(refusal), **refusal.fields}
    except OSError as err:
        if err.errno == errno.EROFS:
            reply = {"ok": False, "error": read_only(err), "read_only": True}
        elif err.errno in NO_SPACE:
            reply = _no_space(err, args[1:])
        else:
            raise
    if reply is not None:
        emit({"ok": True, **reply} if "ok" not in reply else reply)
    return 0

