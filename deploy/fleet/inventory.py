"""Which boards a fleet command talks to: `--to` targets, a bare list of targets, or the user's Ansible inventory.

An Ansible inventory (INI or YAML: groups and children, ranges such as
`pi[01:20].lab`, host and group vars, `group_vars/` beside it, `--limit`
patterns) is read by Ansible itself (`ansible-core`, the `fleet` extra); we
only take its connection variables. Those we cannot honour (passwords,
other connection plugins, extra ssh arguments, host key checking turned off)
are refused in one line naming the host, never silently skipped.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from deploy.link.ssh import SshOptions
from deploy.link.targets import DeployError, parse_target, valid_port


@dataclass(frozen=True)
class Board:
    """One board of a fleet: its name in tables, how to reach it, and its own connection settings."""

    name: str
    target: str
    """`[user@]host[:port]`, an ssh config alias, or `local:DIR`."""
    identity: Path | None = None
    board_dir: str | None = None
    groups: tuple[str, ...] = ()

    def options(self, opts: SshOptions) -> SshOptions:
        """The fleet's options with this board's own key and folder where its inventory gives them."""
        return replace(opts, identity=self.identity or opts.identity, board_dir=self.board_dir or opts.board_dir)


class InventoryError(DeployError):
    """The inventory cannot be read, or asks for something edgerl cannot honour."""


BARE_LINE = re.compile(r"^[\w.@:/~+-]+$")
"""A line of a bare list: one target, no groups (`[...]`), no variables (`k=v`), no YAML (`key:` at the end)."""

REFUSED = {
    "ansible_password": "a password", "ansible_ssh_pass": "a password", "ansible_ssh_password": "a password",
    "ansible_become_password": "a password", "ansible_become_pass": "a password", "ansible_sudo_pass": "a password",
    "ansible_ssh_private_key_passphrase": "a key passphrase",
    "ansible_ssh_common_args": "extra ssh arguments", "ansible_ssh_extra_args": "extra ssh arguments",
    "ansible_ssh_args": "extra ssh arguments",
}
"""Connection variables edgerl cannot honour, and what they are (said in the refusal)."""

HONOURED_CONNECTIONS = ("ssh", "smart", "paramiko", "local")

_ALIASES = {"host": ("ansible_host", "ansible_ssh_host"), "port": ("ansible_port", "ansible_ssh_port"),
            "user": ("ansible_user", "ansible_ssh_user"),
            "key": ("ansible_ssh_private_key_file", "ansible_private_key_file")}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def is_bare_list(path: Path, text: str) -> bool:
    """Whether the file is edgerl's own list of targets (one per line) rather than an Ansible inventory."""
    if path.suffix in (".yml", ".yaml", ".json", ".ini") or path.is_dir():
        return False
    return all(BARE_LINE.match(line) and not line.endswith(":") and "[" not in line for line in _lines(text))


def load_boards(targets: list[str], inventory: Path | None, limit: str | None = None, flag: str = "--to"
                ) -> list[Board]:
    """Every board to act on, in order: the targets (given with `flag`), then the inventory's hosts."""
    boards = [Board(t, t) for t in targets]
    if inventory is not None:
        boards += read_inventory(Path(inventory), limit)
    elif limit:
        raise InventoryError("--limit selects hosts of an --inventory; give one")
    if not boards:
        raise InventoryError(f"say which boards: {flag} TARGET{' (repeatable)' if flag == '--to' else ''} or "
                             "--inventory FILE")
    names = [b.name for b in boards]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InventoryError(f"{', '.join(twice)} listed more than once; name each board once")
    return boards


def read_inventory(path: Path, limit: str | None) -> list[Board]:
    """A bare list of targets, or an Ansible inventory read by Ansible (the `fleet` extra)."""
    text = ""
    if not path.is_dir():
        try:
            text = path.read_text()
        except OSError as err:
            raise InventoryError(f"cannot read inventory {path}: {err.strerror}") from err
    if is_bare_list(path, text):
        if limit:
            raise InventoryError(f"--limit needs an Ansible inventory; {path} is a plain list of targets")
        lines = _lines(text)
        for line in lines:
            parse_target(line)  # a bad line is refused before any board is touched
        return [Board(line, line) for line in lines]
    return _ansible_boards(path, limit)


def _ansible_boards(path: Path, limit: str | None) -> list[Board]:
    try:
        present = importlib.util.find_spec("ansible") is not None
    except ValueError:
        present = False
    if not present:
        raise InventoryError(f"{path} is an Ansible inventory, which edgerl reads with Ansible itself: "
                             "pip install 'edgerl[fleet]' (ansible-core), or list one TARGET per line")
    done = subprocess.run([sys.executable, "-m", "deploy.fleet.ansible_hosts", str(path), limit or ""],
                          capture_output=True, text=True, timeout=300)
    try:
        reply = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InventoryError(f"Ansible could not read inventory {path}: {last}") from None
    if "error" in reply:
        raise InventoryError(f"Ansible cannot read inventory {path}: {reply['error']}")
    if not reply["hosts"]:
        where = f" matching --limit {limit!r}" if limit else ""
        raise InventoryError(f"inventory {path} has no hosts{where}")
    return [board_from_vars(name, hostvars, tuple(groups)) for name, hostvars, groups in reply["hosts"]]


def _first(hostvars: dict, names: tuple[str, ...]) -> object:
    return next((hostvars[n] for n in names if hostvars.get(n) not in (None, "")), None)


def board_from_vars(name: str, hostvars: dict, groups: tuple[str, ...] = ()) -> Board:
    """One Ansible host as a Board, or a one-line refusal of what it asks for that edgerl cannot honour."""
    for var, what in REFUSED.items():
        if hostvars.get(var) not in (None, ""):
            raise InventoryError(f"host {name}: {var} gives {what}, which edgerl never uses (it connects with keys "
                                 "and ~/.ssh/config only); remove it for edgerl, or use an ssh key / an ssh alias")
    connection = str(hostvars.get("ansible_connection") or "ssh")
    if connection not in HONOURED_CONNECTIONS:
        raise InventoryError(f"host {name}: ansible_connection={connection} is not something edgerl can use "
                             "(ssh and local only)")
    if str(hostvars.get("ansible_host_key_checking", "true")).lower() in ("false", "no", "0"):
        raise InventoryError(f"host {name}: ansible_host_key_checking is off; edgerl always checks host keys "
                             "(use --accept-new to record a new board's key once)")
    board_dir = hostvars.get("edgerl_board_dir")
    groups_ = tuple(groups)
    if connection == "local":
        if not board_dir:
            raise InventoryError(f"host {name}: ansible_connection=local needs edgerl_board_dir, the folder "
                                 "that board's releases go into on this machine")
        return Board(name, f"local:{board_dir}", groups=groups_)
    host = str(_first(hostvars, _ALIASES["host"]) or name)
    user, port, key = (_first(hostvars, _ALIASES[k]) for k in ("user", "port", "key"))
    target = f"{user}@{host}" if user else host
    if port is not None:
        target += f":{valid_port(port, f'of host {name} (ansible_port)')}"
    parse_target(target)
    return Board(name, target, Path(str(key)).expanduser() if key else None,
                 str(board_dir) if board_dir else None, groups_)
