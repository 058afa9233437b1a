"""`edgerl enroll --image DIR`: the same enrollment written into a board image, for boards no SSH ever reaches.

DIR is the image's root filesystem as this host sees it (a mounted SD card's root partition, or the folder an
image is built from). Into it goes what `edgerl enroll --on` puts on a board (the agent, python-tuf, the
channel's root.json, the CA, the board's login and settings: the same function writes them, through a local:
target on the board folder inside DIR), then the agent's user timer, enabled, with the user's manager started at
boot by lingering (what `loginctl enable-linger` leaves). Everything is given to the image's user. The venv is
not built here, since the board's CPU may not be this one's: its first poll installs it from the wheels the
channel signs for its kind of board (`edgerl publish --wheels-for MACHINE:PYTHON`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.agent.rollout import wheel_kind
from deploy.board.units import AGENT_TIMER, agent_unit_texts
from deploy.channel.enroll import MIN_PYTHON, EnrollConfig, install_agent, read_root
from deploy.channel.keys import ChannelError
from deploy.link.targets import LocalTarget

BOARD_PYTHON = "/usr/bin/python3"
TRIPLETS = {"aarch64-linux-gnu": "aarch64", "x86_64-linux-gnu": "x86_64", "arm-linux-gnueabihf": "armv7l",
            "riscv64-linux-gnu": "riscv64"}
"""Debian's multiarch folders under /usr/lib, and the machine `uname -m` says on such a board."""


@dataclass(frozen=True)
class ImageConfig:
    """Where the board image is, and whose board folder it holds."""

    folder: Path
    user: str = "pi"
    board_dir: str = "edgerl"
    """The board folder: relative to the user's home (as `--board-dir` for SSH boards), or absolute."""


@dataclass(frozen=True)
class ImageUser:
    """A login of the image, as its /etc/passwd says."""

    name: str
    uid: int
    gid: int
    home: str


def image_user(folder: Path, name: str) -> ImageUser:
    """The image's user `name`, or ChannelError saying what the image lacks."""
    passwd = folder / "etc" / "passwd"
    if not passwd.is_file():
        raise ChannelError(f"{folder} has no etc/passwd: give the board image's root folder (its / mounted here)")
    for line in passwd.read_text().splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[0] == name:
            return ImageUser(name, int(fields[2]), int(fields[3]), fields[5])
    raise ChannelError(f"the image {folder} has no user {name!r}: give --image-user, a login of the image")


def image_python(folder: Path) -> tuple[int, int]:
    """The version of the image's /usr/bin/python3, read from its files (nothing of the image runs here)."""
    python = folder / BOARD_PYTHON.lstrip("/")
    if not python.is_symlink() and not python.exists():
        raise ChannelError(f"the image {folder} has no {BOARD_PYTHON}: the pull agent needs Python "
                           f"{'.'.join(map(str, MIN_PYTHON))} or newer there")
    named = re.fullmatch(r"python(\d+)\.(\d+)", os.readlink(python)) if python.is_symlink() else None
    if named:
        return int(named.group(1)), int(named.group(2))
    versions = sorted(tuple(map(int, p.parent.name[6:].split("."))) for p in (folder / "usr" / "lib").glob(
        "python3.*/os.py"))
    if not versions:
        raise ChannelError(f"cannot tell the version of the image's {BOARD_PYTHON} (no usr/lib/python3.N)")
    return versions[-1]


def image_machine(folder: Path) -> str:
    """The board's machine as `uname -m` will say it, from the image's multiarch folder ('MACHINE' if unknown)."""
    found = [machine for triplet, machine in TRIPLETS.items() if (folder / "usr" / "lib" / triplet).is_dir()]
    return found[0] if len(found) == 1 else "MACHINE"


def _give(path: Path, user: ImageUser) -> None:
    if (path.lstat().st_uid, path.lstat().st_gid) != (user.uid, user.gid):
        os.lchown(path, user.uid, user.gid)


def _give_tree(top: Path, user: ImageUser) -> None:
    _give(top, user)
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            _give(Path(folder, name), user)


def _write_timer(folder: Path, user: ImageUser, board_root: str, agent: str, every: str) -> None:
    """The agent's units in the user's systemd folder, the timer enabled (as `systemctl --user enable` links it)."""
    units_on_board = f"{user.home}/.config/systemd/user"
    units = folder / units_on_board.lstrip("/")
    wants = units / "timers.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for name, text in agent_unit_texts(board_root, f"{board_root}/{agent}", every, BOARD_PYTHON).items():
        (units / name).write_text(text)
        (units / name).chmod(0o644)
    link = wants / AGENT_TIMER
    link.unlink(missing_ok=True)
    link.symlink_to(f"{units_on_board}/{AGENT_TIMER}")
    _give_tree(folder / user.home.lstrip("/") / ".config", user)
    linger = folder / "var" / "lib" / "systemd" / "linger"
    linger.mkdir(parents=True, exist_ok=True)
    (linger / user.name).touch()  # logind starts this user's manager, and so the timer, at boot


def enroll_image(cfg: EnrollConfig, image: ImageConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Enroll the board an image will boot; returns what was written (board id, agent, timer, kind of board)."""
    if not cfg.board:
        raise ChannelError("--image needs --board-id: each board written from an image needs its own id and login")
    user = image_user(image.folder, image.user)
    home = image.folder / user.home.lstrip("/")
    if not home.is_dir():
        raise ChannelError(f"the image has no home folder {user.home} for {user.name}")
    version = image_python(image.folder)
    if version < MIN_PYTHON:
        raise ChannelError(f"the image's Python is {'.'.join(map(str, version))}; the pull agent (python-tuf) needs "
                           f"{'.'.join(map(str, MIN_PYTHON))} or newer: nothing was written")
    board_root = image.board_dir if image.board_dir.startswith("/") else f"{user.home}/{image.board_dir}"
    if os.geteuid() not in (0, user.uid):
        raise ChannelError(f"cannot give files to {user.name} (uid {user.uid}) from here: run as root (sudo), as "
                           "mounting the image needed; nothing was written")
    root_json = read_root(cfg)
    target = LocalTarget(image.folder / board_root.lstrip("/"))
    agent = install_agent(target, cfg.board, cfg, root_json)
    _give_tree(Path(target.root), user)
    _write_timer(image.folder, user, board_root, agent, cfg.every)
    kind = wheel_kind(image_machine(image.folder), "{}.{}".format(*version))
    say(f"{image.folder}: {cfg.board} enrolled in {cfg.url} (board folder {board_root}, {AGENT_TIMER} every "
        f"{cfg.every} from boot)")
    say(f"{image.folder}: the board's first poll installs its venv from the channel's wheels: publish with "
        f"`--wheels-for {kind}`")
    return {"board": cfg.board, "agent": f"{board_root}/{agent}", "timer": AGENT_TIMER, "root": board_root,
            "kind": kind}
