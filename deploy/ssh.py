"""A board over SSH, the way ssh users expect it to behave, and never hanging on a dead link.

- Host keys are checked against known_hosts as OpenSSH reads it
  (`deploy.known_hosts`); an unknown host is refused unless the user asked
  to trust it (`--accept-new`, which appends one line); a changed or
  revoked key is always refused.
- `~/.ssh/config` is applied as ssh applies it (`deploy.ssh_config`):
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
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import paramiko

from deploy import known_hosts
from deploy.ssh_config import Endpoint, resolve, split_jump
from deploy.targets import DEFAULT_BOARD_DIR, Completed, DeployError, Progress, Spawned, Target, append_from, quote

CONNECTION_ERRORS = (paramiko.SSHException, EOFError, OSError, socket.error)
# Host key algorithms paramiko may negotiate for a key type known_hosts lists.
_ALGORITHMS_OF_TYPE = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


@dataclass(frozen=True)
class SshOptions:
    """How to reach boards: the files ssh would read, how much to trust, how long to wait."""

    known_hosts: Path = Path("~/.ssh/known_hosts")
    ssh_config: Path = Path("~/.ssh/config")
    accept_new: bool = False
    """Trust an unknown host's key and record it (never a changed one)."""
    identity: Path | None = None
    board_dir: str = DEFAULT_BOARD_DIR
    connect_timeout: float = 15.0
    silence_timeout: float = 60.0
    """Seconds without any answer from the board before the step in progress is given up."""
    retries: int = 3
    """Reconnects after a lost connection during an upload, with back-off (within silence_timeout)."""

    @property
    def ping_interval(self) -> float:
        """Seconds between liveness requests: a few per silence period."""
        return max(0.5, min(5.0, self.silence_timeout / 4))


class _HostKeyCheck(paramiko.MissingHostKeyPolicy):
    """Judge the presented key with OpenSSH's reading of known_hosts (paramiko is given no keys of its own)."""

    def __init__(self, path: Path, name: str, accept_new: bool) -> None:
        self.path, self.name, self.accept_new = path, name, accept_new

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        verdict = known_hosts.read_host_keys(self.path, self.name).verdict(key.get_name(), key.get_base64())
        fingerprint = f"{key.get_name()} {key.fingerprint}"
        if verdict == known_hosts.KNOWN:
            return
        if verdict == known_hosts.REVOKED:
            raise DeployError(f"host key of {self.name} ({fingerprint}) is marked @revoked in {self.path}; refusing")
        if verdict == known_hosts.CHANGED:
            raise DeployError(
                f"host key of {self.name} has CHANGED (now {fingerprint}); refusing to connect. If the board was "
                f"reinstalled, remove its old line from {self.path} and rerun"
            )
        if not self.accept_new:
            raise DeployError(
                f"host {self.name} is not in {self.path} (key {fingerprint}); check the fingerprint on the board, "
                "then rerun with --accept-new to trust it"
            )
        known_hosts.append_host_key(self.path, self.name, key.get_name(), key.get_base64())


def _tcp_socket(host: str, port: int, opts: SshOptions) -> socket.socket:
    """A connected socket the kernel gives up on after silence_timeout of unacknowledged data."""
    try:
        sock = socket.create_connection((host, port), timeout=opts.connect_timeout)
    except OSError as err:
        raise DeployError(f"cannot reach {host}:{port}: {err.strerror or err}") from err
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", opts.ping_interval), ("TCP_KEEPINTVL", opts.ping_interval),
                        ("TCP_KEEPCNT", 3), ("TCP_USER_TIMEOUT", opts.silence_timeout * 1000)):
        if hasattr(socket, name):  # Linux; elsewhere the watchdog alone bounds the wait
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), max(1, int(value)))
    return sock


class _Connection:
    """One authenticated SSH connection (to the board or a jump host) with its liveness watchdog."""

    def __init__(self, endpoint: Endpoint, opts: SshOptions, sock: object | None = None) -> None:
        self.endpoint, self.opts = endpoint, opts
        e = endpoint
        self.label = f"{e.user}@{e.alias}" + (f":{e.port}" if e.port != 22 else "")
        self.silent = False
        self.last_alive = time.monotonic()
        name = known_hosts.host_name(e.hostname, e.port)
        known = known_hosts.read_host_keys(opts.known_hosts.expanduser(), name)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_HostKeyCheck(opts.known_hosts.expanduser(), name, opts.accept_new))
        disabled = _disabled_key_algorithms(known.types) if known.keys else {}
        if sock is None and not e.proxy_command:
            sock = _tcp_socket(e.hostname, e.port, opts)
        elif sock is None:
            sock = paramiko.ProxyCommand(e.proxy_command)
        try:
            client.connect(
                e.hostname, port=e.port, username=e.user, key_filename=list(e.identities) or None, sock=sock,
                allow_agent=True, look_for_keys=not e.identities, timeout=opts.connect_timeout,
                banner_timeout=opts.connect_timeout, auth_timeout=opts.connect_timeout,
                channel_timeout=opts.connect_timeout, disabled_algorithms=disabled,
            )
        except DeployError:
            client.close()
            raise
        except paramiko.AuthenticationException as err:
            client.close()
            raise DeployError(f"cannot log in to {e.user}@{e.hostname}: no accepted key (tried agent and "
                              f"{', '.join(e.identities) or 'default keys'}); add your key to the board") from err
        except paramiko.PasswordRequiredException as err:
            client.close()
            raise DeployError("the SSH key is encrypted; load it into ssh-agent (ssh-add) and rerun") from err
        except paramiko.SSHException as err:
            client.close()
            if isinstance(err.__context__, DeployError):
                raise err.__context__ from None
            if known.keys and "host key" in str(err).lower():
                raise DeployError(f"{name} no longer offers the host key type {', '.join(sorted(known.types))} "
                                  f"listed in {opts.known_hosts}: its key has CHANGED; refusing") from err
            raise DeployError(f"cannot reach {e.hostname}:{e.port}: {err}") from err
        except OSError as err:
            client.close()
            raise DeployError(f"cannot reach {e.hostname}:{e.port}: {err.strerror or err}") from err
        self.client = client
        self.transport = client.get_transport()
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, daemon=True, name=f"edgerl-watchdog-{self.label}")
        self._watchdog.start()

    def _watch(self) -> None:
        pinging = threading.Event()

        def ping() -> None:
            try:
                # wait=True returns once the board answers (OpenSSH answers an unknown request with a failure).
                self.transport.global_request("keepalive@openssh.com", wait=True)
                if self.transport.is_active():
                    self.last_alive = time.monotonic()
            except CONNECTION_ERRORS:
                pass  # the link is gone; the step in progress reports it
            finally:
                pinging.clear()

        last_ping = 0.0
        while not self._stop.wait(0.25):
            if not self.transport.is_active():
                return
            now = time.monotonic()
            if not pinging.is_set() and now - last_ping >= self.opts.ping_interval:
                pinging.set()
                last_ping = now
                threading.Thread(target=ping, daemon=True).start()
            if now - self.last_alive > self.opts.silence_timeout:
                self.silent = True
                self.transport.close()  # wakes every blocked channel and SFTP call
                return

    def alive(self) -> bool:
        """The connection is up and the board has answered recently."""
        return self.transport.is_active() and not self.silent

    def close(self) -> None:
        """Stop the watchdog and close the connection."""
        self._stop.set()
        try:
            self.client.close()
        except Exception:  # closing a dead link may raise anything; it is closed either way
            pass


def _disabled_key_algorithms(types: set[str]) -> dict[str, list[str]]:
    """Offer only the host key types known_hosts lists for the host, as ssh prefers them."""
    allowed = {alg for t in types for alg in _ALGORITHMS_OF_TYPE.get(t, (t,))}
    every = paramiko.Transport._preferred_keys
    return {"keys": [alg for alg in every if alg not in allowed]}


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

    def close(self) -> None:
        """Close stdin and the channel: the command sees EOF."""
        try:
            self.channel.close()
        except Exception:  # already gone with the link
            pass


class SshTarget(Target):
    """A board reached with paramiko; reconnects and resumes when the link drops, never blocks forever."""

    def __init__(self, user: str | None, host: str, port: int | None, opts: SshOptions) -> None:
        self.opts = opts
        self.silence_timeout, self.heartbeat = opts.silence_timeout, opts.ping_interval
        self.endpoint = resolve(user, host, port, opts.ssh_config, opts.identity)
        e = self.endpoint
        self.name = f"{e.user}@{e.alias}" + (f":{e.port}" if e.port != 22 else "")
        self.conn: _Connection | None = None
        self._jumps: list[_Connection] = []
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
            conn = _Connection(hop, self.opts, sock)
            self._jumps.append(conn)
            sock = self._channel_through(conn, hop.alias)
        self.conn = _Connection(self.endpoint, self.opts, sock)
        self._sftp = None

    def _channel_through(self, conn: _Connection, via: str) -> paramiko.Channel:
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
            raise self.lost(what) from err

    def _link_is_down(self) -> bool:
        return self.conn is None or not self.conn.alive()

    def lost(self, what: str) -> DeployError:
        """The error for a link that died or went silent during `what`."""
        if self.conn is not None and self.conn.silent:
            return DeployError(f"{self.name} did not answer for {self.opts.silence_timeout:.0f} s during {what}; "
                               "check the board and its network, then rerun")
        return DeployError(f"lost the connection to {self.name} during {what}; rerun when the board is reachable")

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
            if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            if self._link_is_down() or channel.closed:
                raise self.lost(what)
            if deadline is not None and time.monotonic() > deadline:
                raise DeployError(f"{what} on {self.name} did not finish within {timeout:.0f} s")
        if partial and on_line:
            on_line(partial.decode(errors="replace"))
        return Completed(channel.recv_exit_status(), b"".join(out).decode(errors="replace"),
                         b"".join(err).decode(errors="replace"))

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
