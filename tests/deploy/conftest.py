"""A real OpenSSH server on 127.0.0.1 for the deploy tests, and boards behind it.

Hermetic: keys, known_hosts and ssh config are written by the fixture under
a temporary folder; the user's ~/.ssh is never read (HOME is redirected for
CLI runs, and every option is passed explicitly in-process).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import in_process  # noqa: E402
from small_disks import small_tmpfs  # noqa: E402
from tests_ssh import free_port, keygen  # noqa: E402

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    return free_port()


def _keygen(path: Path) -> None:
    keygen(path)


@dataclass
class Sshd:
    """One running sshd and what a client needs to reach it."""

    port: int
    host_pub: str
    home: Path
    """Where this server's SFTP starts: the board's home, distinct per server."""
    proc: subprocess.Popen = None
    log: Path = None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start_sshd(root: Path, client_pub: Path, listen: tuple[str, ...] = ("127.0.0.1",), port: int | None = None,
               netns: str | None = None) -> Sshd:
    """sshd on `listen` (inside network namespace `netns` when given); ready when its first address answers."""
    if not Path(SSHD).is_file():
        pytest.fail("deploy tests need a real OpenSSH server: apt-get install openssh-server (make test does it)")
    root.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation folder
    _keygen(root / "host_key")
    (root / "home").mkdir()
    port = port or _free_port()
    config = root / "sshd_config"
    listens = "".join(f"ListenAddress {a}\n" for a in listen)
    config.write_text(
        f"Port {port}\n{listens}HostKey {root / 'host_key'}\n"
        f"AuthorizedKeysFile {client_pub}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin yes\nStrictModes no\nUsePAM no\n"
        f"PidFile {root / 'sshd.pid'}\nSubsystem sftp internal-sftp -d {root / 'home'}\n"
        "LogLevel ERROR\nMaxStartups 50\n"
        # The board's shell starts in its own home, as a fresh Debian board's does: without this, a root login here
        # sources the host's ~/.bashrc (pyenv's init and shims, ~0.2 s of CPU per board command, thousands a run).
        f"SetEnv HOME={root / 'home'}\n"
    )
    log = root / "sshd.log"
    prefix = ["ip", "netns", "exec", netns] if netns else []
    with open(log, "w") as log_file:  # the server holds its own copy of the descriptor
        proc = subprocess.Popen([*prefix, SSHD, "-D", "-e", "-f", str(config)], stderr=log_file)
    for _ in range(100):
        try:
            socket.create_connection((listen[0], port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"sshd did not start: {log.read_text()}")
            time.sleep(0.05)
    host_pub = (root / "host_key.pub").read_text().split()[:2]
    return Sshd(port, " ".join(host_pub), root / "home", proc, log)


@dataclass
class SshWorld:
    """Client-side files and the servers they reach."""

    home: Path
    key: Path
    known_hosts: Path
    ssh_config: Path
    servers: list[Sshd]
    venvs: Path
    wheel_cache: Path
    user: str

    def known_line(self, server: Sshd) -> str:
        return f"[127.0.0.1]:{server.port} {server.host_pub}\n"

    def target(self, server: Sshd) -> str:
        return f"{self.user}@127.0.0.1:{server.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID")}
        env["HOME"] = str(self.home)
        env["PIP_CACHE_DIR"] = str(self.home / "pip-cache")
        return env

    def cli(self, *args: object, timeout: float = 600) -> in_process.Ran:
        return in_process.edgerl(*args, env=self.env(), timeout=timeout)

    def ssh_flags(self) -> list[str]:
        return ["--known-hosts", str(self.known_hosts), "--ssh-config", str(self.ssh_config), "-i", str(self.key)]


@pytest.fixture(scope="session")
def ssh_world(tmp_path_factory, device_venv) -> SshWorld:
    root = tmp_path_factory.mktemp("ssh")
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    key = root / "client_key"
    _keygen(key)
    servers = [start_sshd(root / f"sshd{i}", Path(f"{key}.pub")) for i in range(2)]
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    # One venvs/ for every board of the run, xdist workers included, the device venv installed in it once.
    world = SshWorld(home, key, root / "known_hosts", root / "ssh_config", servers, device_venv.venvs,
                     root / "wheels", user)
    world.known_hosts.write_text("".join(world.known_line(s) for s in servers))
    world.ssh_config.write_text(
        "".join(f"Host board{i}\n  HostName 127.0.0.1\n  Port {s.port}\n  User {user}\n  IdentityFile {key}\n"
                for i, s in enumerate(servers))
    )
    yield world
    for server in servers:
        server.stop()


@pytest.fixture
def board_dir(ssh_world, tmp_path):
    """A fresh board folder whose venvs/ is shared across tests (venv reuse is a feature; this saves minutes)."""

    def make(name: str = "board") -> Path:
        path = tmp_path / name
        path.mkdir(parents=True)
        (path / "venvs").symlink_to(ssh_world.venvs)
        return path

    return make


@pytest.fixture
def ssh_opts(ssh_world):
    from deploy.link.ssh import SshOptions

    def make(board: Path, **kw) -> SshOptions:
        return SshOptions(known_hosts=ssh_world.known_hosts, ssh_config=ssh_world.ssh_config, identity=ssh_world.key,
                          board_dir=str(board), **kw)

    return make


@pytest.fixture
def small_disk_board(ssh_world, tmp_path):
    with small_tmpfs(tmp_path / "small", "size=11m", "the disk-full test") as board:
        (board / "venvs").symlink_to(ssh_world.venvs)  # the venv lives elsewhere; releases fill the 11 MB
        yield board


@pytest.fixture
def few_inodes_board(ssh_world, tmp_path):
    """A board whose disk has bytes to spare but room for few files (a tmpfs with a small inode count)."""
    with small_tmpfs(tmp_path / "few-inodes", "size=64m,nr_inodes=400", "the inode test") as board:
        (board / "venvs").symlink_to(ssh_world.venvs)
        yield board


def copy_bundle(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


# --- Boards behind a link we can cut: a network namespace joined to this one by a veth pair. ---

NETNS_SUBNETS = "10.213.0.0/16"


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    done = subprocess.run([*prefix, "ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        pytest.fail(f"the link-fault tests build a network namespace and need root and iproute2: "
                    f"`ip {' '.join(args)}` said {done.stderr.strip()}")
    return done


NETNS_SLOTS = Path("/tmp/edgerl-netns")
"""One marker file per namespace board alive on this machine (its number; the pid that holds it inside)."""


@contextmanager
def _slots_locked():
    NETNS_SLOTS.mkdir(exist_ok=True)
    fd = os.open(NETNS_SLOTS / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _alive(marker: Path) -> bool:
    try:
        os.kill(int(marker.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def _claim_slot() -> int:
    """A namespace number no other test process on this machine holds (xdist workers, another checkout's run).

    Numbers drawn from each process's pid collided between the two workers of one run: each deleted the other's
    namespace at creation. With the first board alive, the blackhole route goes in; with the last gone, out.
    """
    with _slots_locked():
        for n in range(1, 251):
            marker = NETNS_SLOTS / str(n)
            if marker.exists() and _alive(marker):
                continue
            marker.write_text(str(os.getpid()))
            # With the veth down, its connected route goes and traffic would leak to the default route: drop it.
            _ip("route", "add", "blackhole", NETNS_SUBNETS, check=False)
            return n
    pytest.fail(f"250 namespace boards are alive on this machine ({NETNS_SLOTS}); stop the other test runs")


def _release_slot(n: int) -> None:
    with _slots_locked():
        (NETNS_SLOTS / str(n)).unlink(missing_ok=True)
        if not any(_alive(m) for m in NETNS_SLOTS.iterdir() if m.name.isdigit()):
            _ip("route", "del", "blackhole", NETNS_SUBNETS, check=False)


@dataclass
class NetnsBoard:
    """An sshd in its own network namespace, reached over a veth pair whose link the test cuts and restores."""

    netns: str
    host_if: str
    board_if: str
    address: str
    sshd: Sshd
    known_hosts: Path
    board: Path

    def cut(self, side: str = "host") -> None:
        if side == "host":
            _ip("link", "set", self.host_if, "down")
        else:
            _ip("link", "set", self.board_if, "down", netns=self.netns)

    def restore(self) -> None:
        _ip("link", "set", self.board_if, "up", netns=self.netns)
        _ip("link", "set", self.host_if, "up")
        # A link that was just set up takes a moment to carry traffic (carrier, neighbour discovery).
        for _ in range(100):
            try:
                socket.create_connection((self.address, 22), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"the board at {self.address} did not come back after the link was restored")

    def opts(self, world: SshWorld, **kw):
        from deploy.link.ssh import SshOptions

        kw = {"silence_timeout": 4.0, "connect_timeout": 4.0, "board_dir": str(self.board), **kw}
        return SshOptions(known_hosts=self.known_hosts, ssh_config=world.ssh_config, identity=world.key, **kw)

    def target(self, world: SshWorld, **kw):
        from deploy.link.ssh import SshTarget

        return SshTarget(world.user, self.address, None, self.opts(world, **kw))

    def flags(self, world: SshWorld) -> list[str]:
        return ["--known-hosts", str(self.known_hosts), "--ssh-config", str(world.ssh_config), "-i", str(world.key),
                "--board-dir", str(self.board)]


@pytest.fixture(scope="session")
def shared_venv(device_venv) -> str:
    """The key of the device venv every test board shares (a namespace board has no route to the package index)."""
    return device_venv.key


@pytest.fixture
def netns_board(ssh_world, shared_venv, tmp_path):
    n = _claim_slot()
    ns, host_if, board_if = f"edgerl-t{n}", f"veh{n}", f"veb{n}"
    host_ip, board_ip = f"10.213.{n}.1", f"10.213.{n}.2"
    _ip("netns", "del", ns, check=False)
    _ip("link", "del", host_if, check=False)
    _ip("netns", "add", ns)
    _ip("link", "add", host_if, "type", "veth", "peer", "name", board_if)
    _ip("link", "set", board_if, "netns", ns)
    _ip("addr", "add", f"{host_ip}/24", "dev", host_if)
    _ip("link", "set", host_if, "up")
    _ip("addr", "add", f"{board_ip}/24", "dev", board_if, netns=ns)
    _ip("link", "set", board_if, "up", netns=ns)
    _ip("link", "set", "lo", "up", netns=ns)
    sshd = start_sshd(tmp_path / "sshd-ns", Path(f"{ssh_world.key}.pub"), listen=(board_ip, "127.0.0.1"), port=22,
                      netns=ns)
    known = tmp_path / "known_hosts_ns"
    known.write_text(f"{board_ip} {sshd.host_pub}\n")
    board = tmp_path / "nsboard"
    board.mkdir()
    (board / "venvs").symlink_to(ssh_world.venvs)
    yield NetnsBoard(ns, host_if, board_if, board_ip, sshd, known, board)
    # Processes of the namespace (sshd, its sessions, board commands) go with it.
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    for pid in pids:
        subprocess.run(["kill", "-9", pid], capture_output=True)
    if sshd.proc.poll() is None:  # a namespace deleted under it leaves its sshd outside any: end it by its process
        sshd.proc.kill()
        sshd.proc.wait(timeout=10)
    _ip("netns", "del", ns, check=False)
    _ip("link", "del", host_if, check=False)
    _release_slot(n)


@pytest.fixture(scope="session")
def sshd_starter():
    """`start_sshd` for tests that build boards of their own (the fleet): a conftest is not imported by name."""
    return start_sshd
