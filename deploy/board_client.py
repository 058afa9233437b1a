"""The host's end of `deploy/board/side.py`: ship it to the board once per version, call its ops, read replies.

The board module and the layout it imports are put under
`<board folder>/.board/<digest>/` the first time a host of this version
reaches the board, and checked against this host's bytes on every new
connection before anything runs from there: the code that judges a release
is always the deploying host's, and a damaged copy is replaced, not run.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy.board import data, deploy_lock, durable, fleet_line, health, runner, service, side, trust, units, venvs
from deploy.link.targets import DeployError, Spawned, Target
from device import layout

_DEVICE = Path(layout.__file__).resolve().parent
_BOARD_MODULES = (side, service, health, units, durable, runner, trust, fleet_line, data, venvs, deploy_lock)
SHIPPED = {Path(m.__file__).name: Path(m.__file__).resolve() for m in _BOARD_MODULES} | {
    "device/__init__.py": _DEVICE / "__init__.py",
    "device/in_use.py": _DEVICE / "in_use.py",
    "device/layout.py": _DEVICE / "layout.py",
    "device/manifest.py": _DEVICE / "manifest.py",
    "device/trust.py": _DEVICE / "trust.py",
}
"""What the board module needs on the board, by its path there."""


def code_digest(files: dict[str, Path] = SHIPPED) -> str:
    """One digest of every shipped file, names included: the folder the code lives in on the board."""
    h = hashlib.sha256()
    for name, path in sorted(files.items()):
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


CODE_DIGEST = code_digest()


def _same(target: Target, remote: str, local: Path) -> bool:
    if not target.exists(remote):
        return False
    with tempfile.TemporaryDirectory(prefix="edgerl-board-") as tmp:
        copy = Path(tmp) / "copy"
        target.get(remote, copy)
        return copy.read_bytes() == local.read_bytes()


def ensure_code(target: Target) -> str:
    """The board module's folder on the board, shipped or checked once per connection."""
    folder = target.path(layout.BOARD_CODE, CODE_DIGEST)
    if getattr(target, "board_code_checked", None) == folder:
        return folder
    try:
        missing = [(f"{folder}/{name}", local) for name, local in sorted(SHIPPED.items())
                   if not _same(target, f"{folder}/{name}", local)]
        if missing:
            target.check(["mkdir", "-p", f"{folder}/{layout.DEVICE_DIR}"], "making the board module's folder")
        # Each upload writes its own part file: this runs before the board's lock is taken, and two deploys
        # starting at once on a fresh board would otherwise write, then rename away, one shared part file.
        # The files are small (no resume needed) and named by content, so either rename leaves the same bytes.
        token = secrets.token_hex(4)
        for remote, local in missing:
            target.put(local, f"{remote}{layout.PART}-{token}")
            target.rename(f"{remote}{layout.PART}-{token}", remote)
    except OSError as err:
        raise DeployError(f"cannot put edgerl's board module on {target.name} ({err}); the board may be out of disk "
                          "space or inodes (`df -h -i` there): free some and rerun, nothing was changed") from err
    target.board_code_checked = folder
    return folder


def argv(target: Target, op: str, *args: str, python: str = "python3") -> list[str]:
    """The command line that runs `op` on the board (a service op is board/service.py's)."""
    script = next((f"{m.__name__.rpartition('.')[2]}.py" for m in (service, trust, fleet_line, data)
                   if op in m.OPS), "side.py")
    return [python, f"{ensure_code(target)}/{script}", op, *args]


def parse_reply(text: str) -> dict[str, Any] | None:
    """The last JSON object line of an op's stdout (pip may print above it), or None."""
    for line in reversed(text.strip().splitlines()):
        try:
            reply = json.loads(line)
        except ValueError:
            continue
        if isinstance(reply, dict) and "ok" in reply:
            return reply
    return None


def call(target: Target, op: str, *args: str, what: str, timeout: float = 120, python: str = "python3",
         env: dict[str, str] | None = None, on_line: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run an op and return its reply, refusals included (`reply["ok"]` is False); a crash raises DeployError."""
    done = target.run(argv(target, op, *args, python=python), timeout=timeout, what=what, env=env, on_line=on_line)
    reply = parse_reply(done.stdout)
    if reply is None:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise DeployError(f"{what} failed on {target.name}: {detail[-1] if detail else f'exit {done.returncode}'}")
    return reply


def expect(target: Target, op: str, *args: str, what: str, **kw: Any) -> dict[str, Any]:
    """Run an op that must succeed; a refusal raises DeployError with the board's one line."""
    reply = call(target, op, *args, what=what, **kw)
    if not reply["ok"]:
        raise DeployError(f"{what} failed on {target.name}: {reply['error']}")
    return reply


def spawn(target: Target, op: str, *args: str, what: str) -> Spawned:
    """Start an op that keeps running (the deploy lock's holder), its stdin kept open."""
    return target.spawn(argv(target, op, *args), what=what)
