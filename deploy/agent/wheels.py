"""The venv a release needs, installed on the board from the wheels the channel signs for its kind of board.

A board nobody reached by SSH (`edgerl enroll --image`), or one whose channel now pins new requirements, has no
venv for them. The rollout names, per venv key (requirements, machine, Python: deploy/board/venvs.py's key, the
one a push computes), the wheels `edgerl publish --wheels-for` put into the channel. Each is fetched as any
target is (Range-resumed into a .part, checked by TUF) into wheelhouse/<key>/ and kept there, so a wheel the
board holds is checked, not fetched again; then pip installs them with no index, as a push's --wheelhouse does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

if __package__:
    from deploy.agent.fetch import ChannelHttp
    from deploy.agent.rollout import wheel_kind, wheel_target
    from deploy.board.durable import write_durably
    from deploy.board.runner import Refused
    from deploy.board.venvs import this_board, venv_key
else:
    from durable import write_durably
    from fetch import ChannelHttp
    from rollout import wheel_kind, wheel_target
    from runner import Refused
    from venvs import this_board, venv_key

from tuf.api import exceptions
from tuf.ngclient import Updater

from device import layout

INSTALL_TIMEOUT = 1800.0
"""pip on a Pi takes about a minute for numpy, onnxruntime and ale-py; an emulated board several."""


def venv_for(root: str, rollout: dict[str, Any]) -> tuple[str, str, bool]:
    """(python, key, complete?) of the venv the rollout's requirements name on this kind of board."""
    key = venv_key([str(r) for r in rollout["requirements"]], *this_board())
    venv = os.path.join(root, layout.VENVS, key)
    return os.path.join(venv, "bin", "python"), key, os.path.isfile(os.path.join(venv, layout.VENV_COMPLETE))


def _held(path: str, info: Any) -> bool:
    """Whether the board already holds this wheel whole (a push's wheelhouse, or an earlier poll)."""
    try:
        with open(path, "rb") as fh:
            info.verify_length_and_hashes(fh)
    except (OSError, exceptions.LengthOrHashMismatchError):
        return False
    return True


def fetch_wheels(root: str, key: str, names: list[str], updater: Updater, http: ChannelHttp) -> tuple[str, int]:
    """The signed wheels into wheelhouse/<key>/ (those held already are kept); returns (folder, bytes fetched)."""
    house = os.path.join(root, layout.WHEELHOUSE, key)
    os.makedirs(house, exist_ok=True)
    got = 0
    for name in names:
        info = updater.get_targetinfo(wheel_target(key, name))
        if info is None or os.sep in name or name.startswith("."):
            raise Refused(f"the channel signs no wheel {name} for this board's venv {key}")
        final = os.path.join(house, name)
        if not _held(final, info):
            got += http.resume(info, final + layout.PART)
            os.rename(final + layout.PART, final)
    return house, got


def _last_line(done: subprocess.CompletedProcess) -> str:
    lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return lines[-1] if lines else f"exit {done.returncode}"


def install_venv(root: str, key: str, requirements: list[str], house: str) -> str:
    """A fresh venv from the wheelhouse, with no index (marked complete only once pip succeeded)."""
    venv = os.path.join(root, layout.VENVS, key)
    shutil.rmtree(venv, ignore_errors=True)
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise Refused(f"creating the venv failed ({_last_line(done)}): install python3-venv on the board")
    python = os.path.join(venv, "bin", "python")
    done = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
                           "--find-links", house, *requirements], capture_output=True, text=True,
                          timeout=INSTALL_TIMEOUT)
    if done.returncode != 0:
        raise Refused(f"pip could not install {' '.join(requirements)} from the channel's wheels: {_last_line(done)}")
    write_durably(os.path.join(venv, layout.VENV_COMPLETE), "\n".join(requirements) + "\n")
    return python


def ensure_venv(root: str, rollout: dict[str, Any], updater: Updater, http: ChannelHttp) -> tuple[str, str, int]:
    """(python, key, wheel bytes fetched): the release's venv, installed from the channel's wheels if missing."""
    python, key, complete = venv_for(root, rollout)
    if complete:
        return python, key, 0
    requirements = [str(r) for r in rollout["requirements"]]
    names = (rollout.get("wheels") or {}).get(key)
    if not names:
        kind = wheel_kind(*this_board())
        raise Refused(f"no venv on this board for {' '.join(requirements)} and the channel carries no wheels for "
                      f"{kind}: publish with `--wheels-for {kind}` (or enroll the board again over SSH)")
    house, got = fetch_wheels(root, key, [str(n) for n in names], updater, http)
    return install_venv(root, key, requirements, house), key, got
