"""A board over SSH, the way ssh users expect it to behave.

- Host keys are checked against known_hosts; an unknown host is refused
  unless the user asked to trust it (`--accept-new`, ssh's
  StrictHostKeyChecking=accept-new); a changed key is always refused.
- `~/.ssh/config` Host aliases, HostName, User, Port and IdentityFile are
  honoured, and the SSH agent is used. Passwords are never taken.
- Uploads go to a partial file over SFTP and resume from its size.
"""

from __future__ import annotations

import getpass
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import paramiko

from deploy.targets import DEFAULT_BOARD_DIR, Completed, DeployError, Progress, Target, append_from, quote

CONNECTION_ERRORS = (paramiko.SSHException, EOFError, OSError, socket.error)


@dataclass(frozen=True)
class SshOptions:
    """How to reach boards: the files ssh would read, and how much to trust."""

    known_hosts: Path = Path("~/.ssh/known_hosts")
    ssh_config: Path = Path("~/.ssh/config")
    accept_new: bool = False
    """Trust an unknown host's key and record it (never a changed one)."""
    identity: Path | None = None
    board_dir: str = DEFAULT_BOARD_DIR
    connect_timeout: float = 15.0
    retries: int = 3
    """Reconnects after a lost connection during an upload, with back-off."""


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Record an unknown host's key (only when the user asked for it)."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        client.save_host_keys(str(self.known_hosts))


class _Refuse(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise DeployError(
            f"host {hostname} is not in {self.known_hosts} (key {key.get_name()} "
            f"{key.fingerprint}); check the fingerprint on the board, then rerun with --accept-new to trust it"
        )


@dataclass(frozen=True)
class Endpoint:
    """Where to connect, after ~/.ssh/config is applied."""

    alias: str
    hostname: str
    user: str
    port: int
    identities: tuple[str, ...]


def resolve(user: str | None, host: str, port: int | None, opts: SshOptions) -> Endpoint:
    """Apply ~/.ssh/config to the target as ssh would (the command line wins over the file)."""
    config = paramiko.SSHConfig()
    path = opts.ssh_config.expanduser()
    if path.is_file():
        config = paramiko.SSHConfig.from_path(str(path))
    entry = config.lookup(host)
    identities = tuple(entry.get("identityfile", []))
    if opts.identity:
        identities = (str(opts.identity), *identities)
    return Endpoint(
        alias=host,
        hostname=entry.get("hostname", host),
        user=user or entry.get("user") or getpass.getuser(),
        port=port or int(entry.get("port", 22)),
        identities=tuple(str(Path(i).expanduser()) for i in identities),
    )


class SshTarget(Target):
    """A board reached with paramiko; reconnects and resumes when the link drops."""

    def __init__(self, user: str | None, host: str, port: int | None, opts: SshOptions) -> None:
        self.opts = opts
        self.endpoint = resolve(user, host, port, opts)
        e = self.endpoint
        self.name = f"{e.user}@{e.alias}" + (f":{e.port}" if e.port != 22 else "")
        self.client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._connect()
        home = self.sftp.normalize(".")
        self.root = opts.board_dir if opts.board_dir.startswith("/") else str(PurePosixPath(home, opts.board_dir))

    def _connect(self) -> None:
        e, opts = self.endpoint, self.opts
        known = opts.known_hosts.expanduser()
        client = paramiko.SSHClient()
        if known.is_file():
            client.load_host_keys(str(known))
        client.set_missing_host_key_policy(_AcceptNew(known) if opts.accept_new else _Refuse(known))
        try:
            client.connect(
                e.hostname, port=e.port, username=e.user, key_filename=list(e.identities) or None,
                allow_agent=True, look_for_keys=not e.identities, timeout=opts.connect_timeout,
                banner_timeout=opts.connect_timeout, auth_timeout=opts.connect_timeout,
            )
        except paramiko.BadHostKeyException as err:
            raise DeployError(
                f"host key of {e.hostname} has CHANGED (now {err.key.get_name()} {err.key.fingerprint}); refusing "
                f"to connect. If the board was reinstalled, remove its old line from {known} and rerun"
            ) from err
        except paramiko.AuthenticationException as err:
            raise DeployError(f"cannot log in to {e.user}@{e.hostname}: no accepted key (tried agent and "
                              f"{', '.join(e.identities) or 'default keys'}); add your key to the board") from err
        except paramiko.PasswordRequiredException as err:
            raise DeployError("the SSH key is encrypted; load it into ssh-agent (ssh-add) and rerun") from err
        except (OSError, paramiko.SSHException) as err:
            if isinstance(err.__context__, DeployError):
                raise err.__context__ from None
            raise DeployError(f"cannot reach {e.hostname}:{e.port}: {err}") from err
        self.client = client
        self._sftp = None

    @property
    def sftp(self) -> paramiko.SFTPClient:
        """The SFTP session, opened on first use."""
        if self._sftp is None:
            assert self.client is not None
            self._sftp = self.client.open_sftp()
        return self._sftp

    def reconnect(self) -> None:
        """Drop the link and open a new one (after a connection loss)."""
        self.close()
        self._connect()

    def run(self, argv: list[str], timeout: float | None = None, on_line: Callable[[str], None] | None = None,
            env: dict[str, str] | None = None) -> Completed:
        """Run argv on the board, quoted word by word; reconnects once if the link was lost."""
        transport = self.client.get_transport() if self.client is not None else None
        if transport is None or not transport.is_active():
            self.reconnect()
        assert self.client is not None
        words = (["env", *[f"{k}={v}" for k, v in env.items()]] if env else []) + argv
        stdin, stdout, stderr = self.client.exec_command(quote(words), timeout=timeout)
        stdin.close()
        err_lines = []
        for line in iter(stderr.readline, ""):
            err_lines.append(line)
            if on_line:
                on_line(line.rstrip("\n"))
        out = stdout.read().decode(errors="replace")
        return Completed(stdout.channel.recv_exit_status(), out, "".join(err_lines))

    def put(self, local: Path, remote: str, progress: Progress | None = None) -> int:
        """Upload to `remote`, appending to whatever part of it is already there."""
        size = Path(local).stat().st_size
        attempt, sent = 0, 0
        while True:
            try:
                return sent + self._put_once(local, remote, size, progress)
            except CONNECTION_ERRORS as err:
                transport = self.client.get_transport() if self.client is not None else None
                if isinstance(err, OSError) and transport is not None and transport.is_active():
                    raise  # the board refused the write (disk full, permissions): retrying cannot help
                attempt += 1
                if attempt > self.opts.retries:
                    raise DeployError(f"upload of {Path(local).name} to {self.name} failed after {attempt} attempts "
                                      f"({err}); rerun to resume from where it stopped") from err
                time.sleep(min(0.5 * 2 ** attempt, 8.0))
                try:
                    self.reconnect()
                except DeployError:
                    continue

    def _put_once(self, local: Path, remote: str, size: int, progress: Progress | None) -> int:
        transport = self.client.get_transport() if self.client is not None else None
        if transport is None or not transport.is_active():
            raise EOFError("connection lost")
        try:
            offset = self.sftp.stat(remote).st_size or 0
        except FileNotFoundError:
            offset = 0
        if offset > size:
            self.sftp.remove(remote)
            offset = 0
        with open(local, "rb") as src, self.sftp.open(remote, "ab") as out:
            out.set_pipelined(True)
            return append_from(src, out, offset, progress)

    def get(self, remote: str, local: Path) -> None:
        """Download one file over SFTP."""
        self.sftp.get(remote, str(local))

    def exists(self, remote: str) -> bool:
        """SFTP stat."""
        try:
            self.sftp.stat(remote)
            return True
        except FileNotFoundError:
            return False

    def rename(self, src: str, dst: str) -> None:
        """SFTP posix-rename (atomic replace, OpenSSH extension)."""
        self.sftp.posix_rename(src, dst)

    def close(self) -> None:
        """Close SFTP and the connection."""
        for thing in (self._sftp, self.client):
            try:
                if thing is not None:
                    thing.close()
            except Exception:  # closing a dead link may raise anything; it is closed either way
                pass
        self._sftp = None
        self.client = None
