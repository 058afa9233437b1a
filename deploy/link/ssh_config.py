"""~/.ssh/config applied to a target as ssh applies it: aliases, Include, ProxyCommand and ProxyJump.

paramiko parses the Host/Match blocks but treats `Include` as an unknown
keyword and leaves proxies to the caller. Include is expanded here before
parsing (globs, paths relative to ~/.ssh); ProxyCommand and ProxyJump are
returned in the Endpoint so the connection goes where the user's bastion
says, never silently direct. Ports are checked, not wrapped.
"""

from __future__ import annotations

import getpass
import glob
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import paramiko

from deploy.link.targets import DeployError, valid_port

MAX_INCLUDE_DEPTH = 16


@dataclass(frozen=True)
class Endpoint:
    """Where to connect, after ~/.ssh/config is applied."""

    alias: str
    hostname: str
    user: str
    port: int
    identities: tuple[str, ...]
    proxy_command: str | None = None
    """A command whose stdin/stdout is the connection (paramiko.ProxyCommand)."""
    proxy_jump: tuple[str, ...] = ()
    """Jump hosts, first to last, each `[user@]host[:port]` or an alias; the board is reached through them."""


def read_config_text(path: Path, depth: int = 0) -> str:
    """The config file with every Include replaced by the files it names, recursively."""
    if depth > MAX_INCLUDE_DEPTH:
        raise DeployError(f"ssh config Include nests deeper than {MAX_INCLUDE_DEPTH} levels at {path}")
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise DeployError(f"cannot read ssh config {path}: {err.strerror}") from err
    out = []
    for line in lines:
        words = line.strip().replace("=", " ", 1).split(None, 1)
        if words and words[0].lower() == "include" and len(words) == 2:
            for pattern in shlex.split(words[1]):
                pattern = os.path.expanduser(pattern)
                if not os.path.isabs(pattern):  # OpenSSH: relative to ~/.ssh for user configs
                    pattern = str(Path("~/.ssh").expanduser() / pattern)
                for included in sorted(glob.glob(pattern)):
                    out.append(read_config_text(Path(included), depth + 1))
            continue
        out.append(line)
    return "\n".join(out)


def load_config(path: Path) -> paramiko.SSHConfig:
    """The user's ssh config with Includes expanded (an empty one when the file does not exist)."""
    path = Path(path).expanduser()
    if not path.is_file():
        return paramiko.SSHConfig()
    return paramiko.SSHConfig.from_text(read_config_text(path))


def _none(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() == "none" else value


def resolve(user: str | None, host: str, port: int | None, config_path: Path,
            identity: Path | None = None) -> Endpoint:
    """Apply the ssh config to the target as ssh would (the command line wins over the file)."""
    entry = load_config(config_path).lookup(host)
    identities = tuple(entry.get("identityfile", []))
    if identity:
        identities = (str(identity), *identities)
    proxy_command = _none(entry.get("proxycommand"))
    jumps = _none(entry.get("proxyjump"))
    if proxy_command and jumps:
        raise DeployError(f"{host} has both ProxyCommand and ProxyJump in the ssh config; keep one")
    return Endpoint(
        alias=host,
        hostname=entry.get("hostname", host),
        user=user or entry.get("user") or getpass.getuser(),
        port=port or valid_port(entry.get("port", 22), f"of Host {host} in {config_path}"),
        identities=tuple(str(Path(i).expanduser()) for i in identities),
        proxy_command=proxy_command,
        proxy_jump=tuple(j.strip() for j in jumps.split(",")) if jumps else (),
    )


def split_jump(jump: str) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]` (or `ssh://[user@]host[:port]`) -> (user, host, port)."""
    text = jump.removeprefix("ssh://")
    user, _, hostport = text.rpartition("@")
    host, port = hostport, None
    if hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
        port = valid_port(port_text, f"in ProxyJump {jump!r}")
    if not host:
        raise DeployError(f"bad ProxyJump host {jump!r}; use [user@]host[:port]")
    return user or None, host, port
