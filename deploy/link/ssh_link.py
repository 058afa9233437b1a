"""One SSH connection that never hangs: host keys checked as OpenSSH does, a socket and a watchdog that notice silence.

The socket has TCP_USER_TIMEOUT and keepalives; a watchdog thread sends an
SSH request that needs a reply every few seconds and closes a connection
whose board stays silent for `silence_timeout`, which wakes every blocked
channel and SFTP call. `deploy/link/ssh.py` builds the board's verbs on it.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from deploy.link import known_hosts
from deploy.link.ssh_config import Endpoint
from deploy.link.targets import DeployError
from device.layout import BOARD_DIR

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
    board_dir: str = BOARD_DIR
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


def tcp_socket(host: str, port: int, opts: SshOptions) -> socket.socket:
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


class Connection:
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
        disabled = disabled_key_algorithms(known.types) if known.keys else {}
        if sock is None and not e.proxy_command:
            sock = tcp_socket(e.hostname, e.port, opts)
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
            transport = client.get_transport()
            spoke = transport is not None and bool(transport.remote_version)
            client.close()
            if not spoke:  # paramiko then says "Error reading SSH protocol banner" or "No existing session"
                raise DeployError(f"{e.hostname}:{e.port} took the connection but did not answer as an SSH server "
                                  f"within {opts.connect_timeout:.0f} s: is sshd running there, and is {e.port} its "
                                  "port?") from err
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


def disabled_key_algorithms(types: set[str]) -> dict[str, list[str]]:
    """Offer only the host key types known_hosts lists for the host, as ssh prefers them."""
    allowed = {alg for t in types for alg in _ALGORITHMS_OF_TYPE.get(t, (t,))}
    every = paramiko.Transport._preferred_keys
    return {"keys": [alg for alg in every if alg not in allowed]}


