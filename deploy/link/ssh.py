"""A board over SSH, the way ssh users expect it to behave, and never hanging on a dead link.

- Host keys are checked against known_hosts as OpenSSH reads it
  (`deploy.link.known_hosts`); an unknown host is refused unless the user asked
  to trust it (`--accept-new`, which appends one line); a changed or
  revoked key is always refused.
- `~/.ssh/config` is applied as ssh applies it (`deploy.link.ssh_config`):
  aliases, HostName, User, Port, IdentityFile, Include, ProxyCommand and
  ProxyJump. The SSH agent is used. Passwords are never taken.
- A silent board is noticed within `silence_timeout` seconds, whatever the
  link: the socket has TCP_USER_TIMEOUT and keepalives, and a watchdog
  thread sends an SSH request that needs a reply every few seconds (like
  ssh's ServerAliveInterval, so a frozen sshd or a bastion in between is
  caught too). When the board stays silent the watchdog closes the
  connection, which wakes every blocked channel and SFTP call, and the
  step that was running fails with one line naming the board and the step.
- Uploads go to a partial file over SFTP and resume from its size.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import paramiko

from deploy.link.ssh_config import resolve, split_jump
from deploy.link.ssh_link import CONNECTION_ERRORS, Connection, SshOptions
from deploy.link.targets import Completed, DeployError, Progress, Spawned, Target, append_from, quote

__all__ = ["SshOptions", "SshTarget"]


class _SshProcess(Spawned):
    """A long-running board command whose stdin we keep writing to."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self.channel = channel
        self._buffer = b""

    def readline(self, timeout: float) -> str:
        """One stdout line, or '' at EOF or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return ""
            select.select([self.channel], [], [], min(left, 0.5))
            if self.channel.recv_ready():
                data = self.channel.recv(4096)
                if not data:
                    break
                self._buffer += data
            elif self.channel.exit_status_ready() or self.channel.closed:
                break
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace")

    def alive(self) -> bool:
        """The command is still running and its channel open."""
        transport = self.channel.get_transport()
        return bool(transport and transport.is_active()) and not self.channel.closed \
            and not self.channel.exit_status_ready()

    def write(self, data: bytes) -> None:
        """Send bytes to the command's stdin (dropped silently once the link is gone)."""
        try:
            self.channel.settimeout(1.0)
            self.channel.sendall(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def close(self, wait: float = 5.0) -> None:
        """Send EOF, wait (bounded) for the command to end, then close the channel.

        A deploy lock's holder ends on that EOF and the kernel frees its lock then: waiting for its exit is what
        makes "the lock is gone when edgerl exits" true (closing at once left it held for a moment, and a deploy
        started right after was told another one was running). A dead link is not waited on past `wait`.
        """
        try:
            self.channel.shutdown_write()
            self.channel.status_event.wait(wait)  # set by paramiko when the exit status arrives
        except Exception:  # noqa: BLE001 - already gone with the link
            pass
        try:
            self.channel.close()
        except Exception:  # noqa: BLE001 - already gone with the link
            pass


class SshTarget(Target):
    """A board reached with paramiko; reconnects and resumes when the link drops, never blocks forever."""

    def __init__(self, user: str | None, host: str, port: int | None, opts: SshOptions) -> None:
        self.opts = opts
        self.silence_timeout, self.heartbeat = opts.silence_timeout, opts.ping_interval
        self.endpoint = resolve(user, host, port, opts.ssh_config, opts.identity)
        e = self.endpoint
        self.name = f"{e.user}@{e.alias}" + (f":{e.port}" if e.port != 22 else "")
        self.conn: Connection | None = None
        self._jumps: list[Connection] = []
        self._sftp: paramiko.SFTPClient | None = None
        self._connect()
        with self.step("opening SFTP"):
            home = self.sftp.normalize(".")
        self.root = opts.board_dir if opts.board_dir.startswith("/") else str(PurePosixPath(home, opts.board_dir))

    @property
    def _answer_timeout(self) -> float:
        # Longer than the watchdog's limit, so a silent board is reported as silent, not as a generic timeout.
        return self.opts.silence_timeout + 2 * self.opts.ping_interval

    @property
    def client(self) -> paramiko.SSHClient | None:
        """The board's paramiko client (None when disconnected)."""
        return self.conn.client if self.conn is not None else None

    def _connect(self) -> None:
        sock = None
        for jump in self.endpoint.proxy_jump:
            user, host, port = split_jump(jump)
            hop = resolve(user, host, port, self.opts.ssh_config, self.opts.identity)
            if hop.proxy_jump or (hop.proxy_command and self._jumps):
                raise DeployError(f"jump host {jump} has its own proxy in the ssh config; edgerl follows one "
                                  "ProxyJump chain without nested proxies: list every hop in the board's ProxyJump")
            conn = Connection(hop, self.opts, sock)
            self._jumps.append(conn)
            sock = self._channel_through(conn, hop.alias)
        self.conn = Connection(self.endpoint, self.opts, sock)
        self._sftp = None

    def _channel_through(self, conn: Connection, via: str) -> paramiko.Channel:
        e = self.endpoint
        try:
            return conn.transport.open_channel("direct-tcpip", (e.hostname, e.port), ("127.0.0.1", 0),
                                               timeout=self.opts.connect_timeout)
        except (paramiko.SSHException, OSError) as err:
            raise DeployError(f"jump host {via} cannot reach {e.hostname}:{e.port}: {err}") from err

    @property
    def sftp(self) -> paramiko.SFTPClient:
        """The SFTP session, opened on first use; every call on it times out after silence_timeout."""
        if self._sftp is None:
            assert self.conn is not None
            self._sftp = self.conn.client.open_sftp()
            self._sftp.get_channel().settimeout(self._answer_timeout)
        return self._sftp

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        """Run a block of board I/O; a dead or silent link becomes one DeployError naming the board and `what`."""
        try:
            yield
        except DeployError:
            raise
        except CONNECTION_ERRORS as err:
            if isinstance(err, OSError) and err.errno is not None and not self._link_is_down():
                raise  # the board answered with an error (disk full, permissions): not a link problem
            raise self.lost(what, err) from err

    def _link_is_down(self) -> bool:
        return self.conn is None or not self.conn.alive()

    def lost(self, what: str, cause: BaseException | None = None) -> DeployError:
        """The error for a link that died or went silent during `what` (naming what paramiko said, if anything)."""
        if self.conn is not None and self.conn.silent:
            return DeployError(f"{self.name} did not answer for {self.opts.silence_timeout:.0f} s during {what}; "
                               "check the board and its network, then rerun")
        said = str(cause).strip().splitlines()[0][:120] if cause is not None and str(cause).strip() else ""
        why = f" ({type(cause).__name__}{': ' + said if said else ''})" if cause is not None else ""
        return DeployError(f"lost the connection to {self.name} during {what}{why}; rerun when the board is "
                           "reachable")

    def reconnect(self) -> None:
        """Drop the link and open a new one (after a connection loss)."""
        self.close()
        self._connect()

    def _ensure_connected(self) -> None:
        if self._link_is_down():
            self.reconnect()

    def run(self, argv: list[str], timeout: float | None = None, on_line: Callable[[str], None] | None = None,
            env: dict[str, str] | None = None, what: str | None = None) -> Completed:
        """Run argv on the board, quoted word by word, streaming stderr lines; bounded by the watchdog."""
        what = what or f"`{argv[0]}`"
        self._ensure_connected()
        assert self.conn is not None
        words = (["env", *[f"{k}={v}" for k, v in env.items()]] if env else []) + argv
        with self.step(what):
            channel = self.conn.transport.open_session(timeout=self._answer_timeout)
            try:
                channel.exec_command(quote(words))
                channel.shutdown_write()
                return self._collect(channel, timeout, on_line, what)
            finally:
                channel.close()

    def _collect(self, channel: paramiko.Channel, timeout: float | None, on_line: Callable[[str], None] | None,
                 what: str) -> Completed:
        out, err, partial = [], [], b""
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            select.select([channel], [], [], 0.5)
            while channel.recv_ready():
                out.append(channel.recv(65536))
            while channel.recv_stderr_ready():
                data = channel.recv_stderr(65536)
                err.append(data)
                partial += data
                *lines, partial = partial.split(b"\n")
                for line in lines:
                    if on_line:
                        on_line(line.decode(errors="replace"))
            # paramiko counts a closed channel as exited (its status -1 when none came); a status may also come
            # before the command's last output. Done is: exited, all output in (EOF or close), none left unread.
            if (channel.exit_status_ready() and (channel.eof_received or channel.closed)
                    and not channel.recv_ready() and not channel.recv_stderr_ready()):
                break
            if channel.closed:
                continue  # its last output came in with the close: read it on the next turn
            if self._link_is_down():
                raise self.lost(what)
            if deadline is not None and time.monotonic() > deadline:
                raise DeployError(f"{what} on {self.name} did not finish within {timeout:.0f} s")
        code = channel.recv_exit_status()
        if code == -1:
            raise self._no_exit_status(what)
        if partial and on_line:
            on_line(partial.decode(errors="replace"))
        return Completed(code, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace"))

    def _no_exit_status(self, what: str) -> DeployError:
        """A command whose channel closed with no exit status: its link died, or the board killed it."""
        for _ in range(10):  # a dying transport closes its channels a moment before it goes inactive
            if self._link_is_down():
                return self.lost(what)
            time.sleep(0.1)
        # The link is up: sshd closes a command killed by a signal with an exit-signal, which paramiko drops.
        return DeployError(f"{what} on {self.name} was killed before it finished (by a signal: out of memory, or "
                           "the board shutting down?); check `dmesg` on the board, then rerun")

    def spawn(self, argv: list[str], what: str) -> Spawned:
        """Start argv on the board with a stdin we keep open (the deploy lock's holder)."""
        self._ensure_connected()
        assert self.conn is not None
        with self.step(what):
            channel = self.conn.transport.open_session(timeout=self._answer_timeout)
            channel.exec_command(quote(argv))
        return _SshProcess(channel)

    def put(self, local: Path, remote: str, progress: Progress | None = None) -> int:
        """Upload to `remote`, appending to whatever part of it is already there."""
        size = Path(local).stat().st_size
        attempt = 0
        what = f"uploading {Path(remote).name.removesuffix('.part')}"
        while True:
            try:
                return self._put_once(local, remote, size, progress)
            except CONNECTION_ERRORS as err:
                if isinstance(err, OSError) and not self._link_is_down():
                    raise  # the board refused the write (disk full, permissions): retrying cannot help
                attempt += 1
                since_alive = time.monotonic() - self.conn.last_alive if self.conn else 0.0
                if attempt > self.opts.retries or since_alive > self.opts.silence_timeout:
                    lost = self.lost(what)
                    raise DeployError(f"{lost}; the upload stopped after {attempt} attempt(s): rerun to resume it "
                                      "from where it stopped") from err
                time.sleep(min(0.5 * 2 ** attempt, 8.0))
                try:
                    self.reconnect()
                except DeployError:
                    continue

    def _put_once(self, local: Path, remote: str, size: int, progress: Progress | None) -> int:
        if self._link_is_down():
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
        """Download one file over SFTP, to a temporary name first (no half file left behind)."""
        local = Path(local)
        tmp = local.with_name(f".{local.name}.part")
        with self.step(f"fetching {PurePosixPath(remote).name}"):
            try:
                self.sftp.get(remote, str(tmp))
                tmp.replace(local)
            finally:
                tmp.unlink(missing_ok=True)

    def exists(self, remote: str) -> bool:
        """SFTP stat."""
        with self.step(f"checking {PurePosixPath(remote).name}"):
            try:
                self.sftp.stat(remote)
                return True
            except FileNotFoundError:
                return False

    def rename(self, src: str, dst: str) -> None:
        """SFTP posix-rename (atomic replace, OpenSSH extension)."""
        with self.step(f"renaming {PurePosixPath(dst).name}"):
            self.sftp.posix_rename(src, dst)

    def close(self) -> None:
        """Close SFTP and the connections (board first, then jump hosts)."""
        try:
            if self._sftp is not None:
                self._sftp.close()
        except Exception:  # closing a dead link may raise anything; it is closed either way
            pass
        self._sftp = None
        for conn in [self.conn, *reversed(self._jumps)]:
            if conn is not None:
                conn.close()
        self.conn, self._jumps = None, []
