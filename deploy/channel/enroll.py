"""`edgerl enroll`: set a board up, once, to pull its releases from a channel (and `edgerl channel poll`).

Over the same checked link as a deploy (SSH or `local:`): the venv the channel's releases need, the agent's code
(`deploy/agent/` beside `deploy/board/`'s modules and the device contract, in a folder named by their digest),
python-tuf and its pure-Python dependencies (copied from this host's own installation: no index is asked), the
channel's trusted root.json, the board's id and report credentials. After that nothing reaches the board from
outside: it asks the channel (`edgerl channel poll --on` runs one poll now).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import urllib3

from deploy import board_client
from deploy.agent import fetch, gate, poll, push, rollout, state, wheels
from deploy.agent.rollout import BOARD_ID
from deploy.channel.keys import ChannelError
from deploy.install import InstallConfig, ensure_venv
from deploy.link.targets import DeployError, Target
from device import layout

AGENT_MODULES = (fetch, gate, poll, push, rollout, state, wheels)
AGENT_LIBS = ("tuf", "securesystemslib", "urllib3")
"""python-tuf and what it needs on the board: pure Python, so the host's copies run on any board."""
MIN_PYTHON = (3, 10)
"""python-tuf 7's minimum; Debian 12 (the booting board) has 3.11, Raspberry Pi OS 12 too."""


@dataclass(frozen=True)
class EnrollConfig:
    """What `edgerl enroll` sets up on a board."""

    url: str
    board: str | None = None
    """The board's id in the channel (its report folder; default: from the target's name)."""
    ca: Path | None = None
    every: str = "10min"
    keep: int = 3
    htpasswd: Path | None = None
    """Where the board's report-area login is added (the server's auth_basic_user_file)."""
    install: InstallConfig = InstallConfig()
    root: Path | None = None
    """The channel's root.json to trust (its metadata/root.json); default: fetched from the URL over TLS."""


def agent_files() -> dict[str, Path]:
    """The agent's code on the board, by its path there: the board modules, the agent, the device contract."""
    files = dict(board_client.SHIPPED)
    files.update({Path(m.__file__).name: Path(m.__file__).resolve() for m in AGENT_MODULES})
    return files


def lib_files() -> dict[str, Path]:
    """python-tuf, securesystemslib and urllib3 as installed here, by their paths under the board's lib/."""
    files = {}
    for name in AGENT_LIBS:
        dist = metadata.distribution(name)
        for item in dist.files or []:
            parts = Path(str(item)).parts
            if parts and parts[0] in (name, name.replace("-", "_")) and item.suffix == ".py":
                files[str(item)] = Path(str(item.locate())).resolve()
    return files


def board_id(target: Target, given: str | None) -> str:
    """The board's id: given, or the target's host (a local: board's folder name)."""
    text = given or target.name.rsplit("/", 1)[-1].rpartition("@")[2].split(":")[0]
    if not BOARD_ID.fullmatch(text):
        raise ChannelError(f"{text!r} is not a board id (letters, digits, '.', '_', '-'): give --board-id")
    return text


def fetch_root(url: str, ca: Path | None) -> bytes:
    """The channel's root.json over TLS checked with the CA: what the board trusts from now on."""
    pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(ca) if ca else None, retries=False,
                               timeout=urllib3.Timeout(connect=10, read=30))
    where = f"{url.rstrip('/')}/metadata/root.json"
    try:
        response = pool.request("GET", where)
    except urllib3.exceptions.HTTPError as err:
        raise ChannelError(f"the channel {url} cannot be reached from here ({fetch._reason(err)}): check the URL "
                           "and --ca; nothing was installed") from None
    if response.status != 200:
        raise ChannelError(f"{where} answered HTTP {response.status}: is {url} a channel's address?")
    try:
        json.loads(response.data)["signed"]["_type"]
    except (ValueError, KeyError, TypeError):
        raise ChannelError(f"{where} is not TUF metadata: is {url} a channel's address?") from None
    return response.data


def _put_text(target: Target, remote: str, text: str | bytes, private: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="edgerl-enroll-") as tmp:
        local = Path(tmp) / "file"
        local.write_bytes(text.encode() if isinstance(text, str) else text)
        local.chmod(0o600 if private else 0o644)
        target.put(local, remote + layout.PART)
        if private:
            target.check(["chmod", "600", remote + layout.PART], "protecting the board's credentials")
        target.rename(remote + layout.PART, remote)


def _ship(target: Target, folder: str, files: dict[str, Path]) -> None:
    dirs = sorted({f"{folder}/{name}".rsplit("/", 1)[0] for name in files})
    target.check(["mkdir", "-p", *dirs], "making the agent's folders")
    for name, local in sorted(files.items()):
        target.put(local, f"{folder}/{name}{layout.PART}")
        target.rename(f"{folder}/{name}{layout.PART}", f"{folder}/{name}")


def htpasswd_line(user: str, password: str) -> str:
    """A line nginx's auth_basic_user_file reads: salted SHA-1 of a random 32-byte password."""
    salt = secrets.token_bytes(8)
    return f"{user}:{{SSHA}}{base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()}\n"


def add_login(htpasswd: Path, user: str, password: str) -> None:
    """Add (or replace) the board's login in the server's user file."""
    lines = htpasswd.read_text().splitlines(keepends=True) if htpasswd.exists() else []
    kept = [line for line in lines if line.split(":", 1)[0] != user]
    htpasswd.write_text("".join(kept) + htpasswd_line(user, password))


def read_root(cfg: EnrollConfig) -> bytes:
    """The root.json the board will trust: the file given, or the channel's own over TLS."""
    return cfg.root.read_bytes() if cfg.root else fetch_root(cfg.url, cfg.ca)


def install_agent(target: Target, board: str, cfg: EnrollConfig, root_json: bytes) -> str:
    """The agent's code, python-tuf, root.json, CA, login and settings into the board folder; the agent's path.

    Paths in agent.json are relative to the board folder, so a board image written on a host (`--image`) holds
    the same settings as a board enrolled over SSH.
    """
    files = agent_files()
    agent = f"{layout.CHANNEL}/agent/{board_client.code_digest(files)}"
    folder, channel = target.path(agent), target.path(layout.CHANNEL)
    if not target.exists(f"{folder}/poll.py"):
        _ship(target, folder, files)
    if not target.exists(f"{channel}/lib/.complete"):
        _ship(target, f"{channel}/lib", lib_files())
        _put_text(target, f"{channel}/lib/.complete", "\n".join(AGENT_LIBS))
    target.check(["mkdir", "-p", f"{channel}/metadata"], "making the channel's folder")
    _put_text(target, f"{channel}/metadata/root.json", root_json)
    ca = None
    if cfg.ca:
        ca = f"{layout.CHANNEL}/ca.pem"
        _put_text(target, target.path(ca), cfg.ca.read_bytes())
    password = secrets.token_urlsafe(32)
    _put_text(target, f"{channel}/{state.CREDENTIALS}", f"{board}:{password}\n", private=True)
    if cfg.htpasswd:
        add_login(cfg.htpasswd, board, password)
    settings = {"url": cfg.url.rstrip("/"), "board": board, "ca": ca, "keep": cfg.keep, "every": cfg.every,
                "agent": f"{agent}/poll.py"}
    _put_text(target, f"{channel}/{state.CONFIG}", json.dumps(settings, indent=1, sort_keys=True))
    return f"{agent}/poll.py"


def enroll(target: Target, cfg: EnrollConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Everything a board needs to pull; returns what was set up (board id, agent path, timer or none)."""
    board = board_id(target, cfg.board)
    root_json = read_root(cfg)
    probe = board_client.expect(target, "probe", target.root, what="checking the board")
    if tuple(int(p) for p in probe["python"].split(".")) < MIN_PYTHON:
        raise DeployError(f"{target.name} has Python {probe['python']}; the pull agent (python-tuf) needs "
                          f"{'.'.join(map(str, MIN_PYTHON))} or newer: nothing was installed")
    ensure_venv(target, probe, cfg.install, say)
    agent = target.path(install_agent(target, board, cfg, root_json))
    say(f"{target.name}: enrolled as {board} in {cfg.url} (agent {agent})")
    timer = None
    if not target.name.startswith("local:"):
        reply = board_client.call(target, "agent-timer", target.root, agent, cfg.every,
                                  what="installing the agent's timer")
        if not reply["ok"] and not reply.get("no_service"):
            raise DeployError(f"{target.name}: {reply['error']}")
        timer = reply.get("timer") if reply["ok"] else None
        if timer is None:
            say(f"{target.name}: {reply['error']}: no timer; poll with `edgerl channel poll --on {target.name}` "
                "or cron")
    return {"board": board, "agent": agent, "login_added": bool(cfg.htpasswd), "timer": timer}


def poll_now(target: Target, on_line: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One poll on the board now (Mender's check-update): the agent's outcome, as JSON."""
    settings_path = target.path(layout.CHANNEL, state.CONFIG)
    if not target.exists(settings_path):
        raise DeployError(f"{target.name} is not enrolled in a channel: run `edgerl enroll --on {target.name} "
                          "--channel URL` first")
    with tempfile.TemporaryDirectory(prefix="edgerl-poll-") as tmp:
        target.get(settings_path, Path(tmp) / "agent.json")
        agent = target.path(json.loads((Path(tmp) / "agent.json").read_text())["agent"])
    done = target.run(["python3", agent, target.root], timeout=900, what="the pull agent's poll", on_line=on_line)
    reply = board_client.parse_reply(done.stdout)
    if reply is None:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise DeployError(f"the pull agent failed on {target.name}: {detail[-1] if detail else 'no output'} "
                          f"(command: {shlex.join(['python3', agent, target.root])})")
    reply["exit_code"] = done.returncode
    return reply
