"""A board that boots: Debian arm64 with its own kernel and systemd, under qemu-system-aarch64.

    python tools/boot_board.py build     # the disk image, cached in ~/.cache/edgerl/arm64-boot
    python tools/boot_board.py boot      # boot it, print the ssh line, wait for Ctrl-C

The userland is tools/arm_board.py's (built first if missing), copied, with
Debian's arm64 kernel, systemd as PID 1, systemd-networkd and sshd added, then
written into an ext4 image with `mkfs.ext4 -d` (no loop mount). Each boot runs
on a qcow2 overlay so the cached image stays clean. The board has two logins
with one key: root, and `pi` (a plain user with lingering enabled, as on a Pi
where the owner ran `sudo loginctl enable-linger pi` once). Its port 22 is
forwarded to 127.0.0.1 only, and user-mode networking is `restrict=on`: the
board reaches nothing outside.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import arm_board  # noqa: E402

CACHE = Path(os.environ.get("EDGERL_BOOT_BOARD", "~/.cache/edgerl/arm64-boot")).expanduser()
QEMU = "qemu-system-aarch64"
DISK_SIZE = "3G"
USER = "pi"
# Units a test board does not need; each costs seconds of an emulated boot.
MASKED = ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "e2scrub_reap.service",
          "fstrim.timer", "man-db.timer", "systemd-networkd-wait-online.service", "dpkg-db-backup.timer",
          "systemd-timesyncd.service")
PACKAGES = ("linux-image-arm64", "systemd-sysv", "udev", "dbus", "libpam-systemd", "openssh-server", "procps", "kmod")
"""dbus: systemd-logind needs it, and logind starts the lingering users' managers at boot."""


class BootError(Exception):
    """The booting board cannot be built or started here."""


def _chroot(rootfs: Path, script: str) -> None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
           "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([arm_board.CHROOT, str(rootfs), "sh", "-ec", script], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def ensure_tools() -> None:
    """qemu-system-aarch64, qemu-img and the ROMs qemu loads (tools/system_needs.py's board tier)."""
    try:
        arm_board.ensure_tools()
    except arm_board.BoardError as err:
        raise BootError(str(err)) from err


def _keys(cache: Path) -> None:
    keys = cache / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    for name in ("client", "host"):
        if not (keys / name).is_file():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)


INITRD_MODULES = ("virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net", "ext4")
"""All the initrd needs on qemu's virt machine: under qemu-user, an initrd of every module takes ~10 min to
build (and Debian builds it twice while installing), one of these a minute or so."""


def _install_system(rootfs: Path) -> None:
    """Kernel, systemd and sshd from Debian, installed under qemu-user (services are not started)."""
    conf = rootfs / "etc" / "initramfs-tools"
    (conf / "conf.d").mkdir(parents=True, exist_ok=True)
    (conf / "conf.d" / "edgerl").write_text("MODULES=list\n")
    (conf / "modules").write_text("\n".join(INITRD_MODULES) + "\n")
    (conf / "update-initramfs.conf").write_text("update_initramfs=no\n")  # once, below, not per package
    # confold: keep the initramfs settings written above where the packages ship their own.
    _chroot(rootfs, "apt-get update -qq && apt-get install -y -qq --no-install-recommends -o "
                    "Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef " + " ".join(PACKAGES))
    (conf / "update-initramfs.conf").write_text("update_initramfs=yes\n")
    _chroot(rootfs, "update-initramfs -c -k all 2>/dev/null || update-initramfs -u -k all")


def _configure(rootfs: Path, cache: Path) -> None:
    """Boot, network, ssh and the two logins."""
    etc = rootfs / "etc"
    (etc / "fstab").write_text("/dev/vda / ext4 defaults,errors=remount-ro 0 1\n")
    (etc / "hostname").write_text("edgerl-board\n")
    (etc / "systemd" / "network").mkdir(parents=True, exist_ok=True)
    (etc / "systemd" / "network" / "10-wired.network").write_text("[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n")
    shutil.copy(cache / "keys" / "host", etc / "ssh" / "edgerl_host_key")
    (etc / "ssh" / "edgerl_host_key").chmod(0o600)
    (etc / "ssh" / "sshd_config.d" / "edgerl.conf").write_text(
        "HostKey /etc/ssh/edgerl_host_key\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nUseDNS no\n")
    # A real board's journal survives a reboot, and a plain user reads their own units' logs in it.
    (rootfs / "var" / "log" / "journal").mkdir(parents=True, exist_ok=True)
    (rootfs / "usr" / "sbin" / "policy-rc.d").unlink(missing_ok=True)
    key = (cache / "keys" / "client.pub").read_text()
    masked = " ".join(MASKED)
    _chroot(rootfs, f"""
        id -u {USER} >/dev/null 2>&1 || useradd -m -s /bin/bash -G adm {USER}
        for home in /root /home/{USER}; do
            mkdir -p $home/.ssh; printf '%s' '{key}' > $home/.ssh/authorized_keys
            chmod 700 $home/.ssh; chmod 600 $home/.ssh/authorized_keys
        done
        chown -R {USER}:{USER} /home/{USER}/.ssh
        mkdir -p /var/lib/systemd/linger; touch /var/lib/systemd/linger/{USER}
        passwd -d root >/dev/null
        systemctl enable systemd-networkd.service ssh.service >/dev/null 2>&1
        systemctl mask {masked} >/dev/null 2>&1
        systemd-machine-id-setup >/dev/null 2>&1
    """)


BOARD_DIR = f"/home/{USER}/edgerl"
"""Where `edgerl deploy --to pi@...` keeps its releases (and venvs/) by default."""


def _venv_key(board: dict[str, str]) -> str:
    """The name `edgerl deploy` gives the device's venv on this image."""
    from deploy.install import venv_key

    return venv_key(arm_board.requirements(), board)


def _bake_venv(rootfs: Path, key: str, board: dict[str, str], say=print) -> None:  # noqa: ANN001
    """The device's venv, installed where deploy looks for it, so no test pays pip under TCG (~4 min a boot).

    Installing a venv on aarch64 stays proven where it is quick: tests/arm deploys with --wheelhouse to the
    qemu-user chroot, which installs it from nothing.
    """
    from deploy.install import InstallConfig, download_wheels
    from device import layout

    wheels = download_wheels(arm_board.requirements(), board, InstallConfig(wheelhouse=True), key)
    inside = f"/opt/wheels-{key}"
    shutil.rmtree(rootfs / inside.lstrip("/"), ignore_errors=True)
    shutil.copytree(wheels, rootfs / inside.lstrip("/"))
    venv = f"{BOARD_DIR}/{layout.VENVS}/{key}"
    say(f"installing the device venv {key} in the image (under qemu-user)")
    _chroot(rootfs, f"""
        rm -rf {venv}
        python3 -m venv {venv}
        {venv}/bin/pip install -q --disable-pip-version-check --no-index --find-links {inside} \
            {' '.join(arm_board.requirements())}
        touch {venv}/{layout.VENV_COMPLETE}
        chown -R {USER}:{USER} {BOARD_DIR}
        rm -rf {inside}
    """)


def build(cache: Path = CACHE, say=print) -> Path:  # noqa: ANN001
    """Build (or finish building) the cached disk image, kernel and initrd; rebuilt when its inputs change."""
    ensure_tools()
    rootfs = cache / "rootfs"
    ready = cache / ".ready"
    if ready.is_file() and rootfs.is_dir():
        arm_board.ensure_binfmt()
        if ready.read_text().strip() == _inputs(_venv_key(arm_board.board_of(rootfs))):
            return cache
    userland = arm_board.build(say=say)
    arm_board.ensure_sshd_installed(userland)
    _keys(cache)
    marker = rootfs / ".edgerl-system"
    if not marker.is_file():
        say(f"copying the arm64 userland into {rootfs}")
        shutil.rmtree(rootfs, ignore_errors=True)
        subprocess.run(["cp", "-a", str(userland), str(rootfs)], check=True)
    if not marker.is_file() or marker.read_text().split() != list(PACKAGES):
        say("installing Debian's arm64 kernel, systemd and sshd (under qemu-user, slow)")
        _install_system(rootfs)
        marker.write_text(" ".join(PACKAGES) + "\n")
    arm_board.ensure_binfmt()
    _configure(rootfs, cache)
    board = arm_board.board_of(rootfs)
    key = _venv_key(board)
    _bake_venv(rootfs, key, board, say=say)
    boot = rootfs / "boot"
    shutil.copy(max(boot.glob("vmlinuz-*")), cache / "vmlinuz")
    shutil.copy(max(boot.glob("initrd.img-*")), cache / "initrd.img")
    say(f"writing the ext4 image ({DISK_SIZE})")
    (cache / "disk.raw").unlink(missing_ok=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "edgerl-root", "-d", str(rootfs), str(cache / "disk.raw"),
                    DISK_SIZE], check=True)
    ready.write_text(_inputs(key) + "\n")
    return cache


def _inputs(venv_key: str) -> str:
    """What the image is made of: its packages and the venv it carries (a new numpy pin means a new image)."""
    return f"packages {' '.join(PACKAGES)}; venv {venv_key}"


CHANNEL_ADDRESS = "10.0.2.100:8443"
"""Where the booting board reaches the host's channel server (qemu's user network forwards it to channel_port)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Board:
    """One booting board: its overlay disk, its forwarded ssh port, its qemu process."""

    workdir: Path
    cache: Path = CACHE
    port: int = field(default_factory=_free_port)
    channel_port: int = field(default_factory=_free_port)
    """The host's loopback port the board reaches as CHANNEL_ADDRESS (a pull channel's server: tests start one)."""
    cpus: int = 2
    memory_mb: int = 1024
    qemu: subprocess.Popen | None = None
    boots: list[float] = field(default_factory=list)
    """Seconds from qemu start to sshd answering, one per boot."""

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.disk = self.workdir / "disk.qcow2"
        if not self.disk.is_file():
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                            str(self.cache / "disk.raw"), str(self.disk)], check=True)

    @property
    def host_key_line(self) -> str:
        """The known_hosts line for this board."""
        key = (self.cache / "keys" / "host.pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n"

    @property
    def client_key(self) -> Path:
        """The private key both logins accept."""
        return self.cache / "keys" / "client"

    def start(self) -> None:
        """Power on (returns at once; see wait_ssh)."""
        argv = [QEMU, "-M", "virt", "-cpu", "cortex-a72", "-accel", "tcg,thread=multi", "-smp", str(self.cpus),
                "-m", str(self.memory_mb), "-display", "none", "-no-reboot",
                "-monitor", f"unix:{self.workdir / 'monitor.sock'},server,nowait",
                "-serial", f"file:{self.workdir / 'console.log'}",
                "-kernel", str(self.cache / "vmlinuz"), "-initrd", str(self.cache / "initrd.img"),
                "-append", "root=/dev/vda rw console=ttyAMA0 quiet",
                "-drive", f"if=virtio,file={self.disk},format=qcow2",
                # restrict=on: the board reaches nothing but, by guestfwd (one nc per connection), the host's
                # loopback port where a test's channel server listens.
                "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{self.port}-:22,"
                           f"guestfwd=tcp:{CHANNEL_ADDRESS}-cmd:nc 127.0.0.1 {self.channel_port}",
                "-device", "virtio-net-pci,netdev=n0", "-device", "virtio-rng-pci"]
        self.qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "qemu.log", "ab"), start_new_session=True)
        self._started = time.monotonic()

    def wait_ssh(self, timeout: float = 600) -> float:
        """Block until sshd sends its banner; return seconds since power-on."""
        deadline = self._started + timeout
        while time.monotonic() < deadline:
            if self.qemu is not None and self.qemu.poll() is not None:
                raise BootError(f"qemu exited with {self.qemu.returncode}: see {self.workdir / 'qemu.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.settimeout(5)
                    if s.recv(4).startswith(b"SSH-"):
                        took = time.monotonic() - self._started
                        self.boots.append(took)
                        return took
            except OSError:
                pass
            time.sleep(1)
        raise BootError(f"the board did not answer ssh within {timeout:.0f} s: see {self.workdir / 'console.log'}")

    def boot(self, timeout: float = 600) -> float:
        """Power on and wait for sshd; seconds it took."""
        self.start()
        return self.wait_ssh(timeout)

    def power_cut(self) -> None:
        """SIGKILL of qemu: the guest gets no shutdown, its page cache is lost."""
        if self.qemu is not None and self.qemu.poll() is None:
            os.killpg(self.qemu.pid, signal.SIGKILL)
            self.qemu.wait()
        self.qemu = None

    def set_link(self, up: bool) -> None:
        """Pull the board's network cable out (or plug it back): qemu's monitor takes the NIC's link down."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mon:
            mon.settimeout(10)
            mon.connect(str(self.workdir / "monitor.sock"))
            mon.sendall(f"set_link n0 {'on' if up else 'off'}\n".encode())
            time.sleep(0.5)

    def ssh(self, user: str, command: str, timeout: float = 120, stdin: Path | None = None
            ) -> subprocess.CompletedProcess:
        """Run a command on the board with OpenSSH's client (the tests' own look at the board), `stdin` its input."""
        known = self.workdir / "known_hosts"
        known.write_text(self.host_key_line)
        with open(stdin or os.devnull, "rb") as given:
            return subprocess.run(["ssh", "-q", "-i", str(self.client_key), "-p", str(self.port),
                                   "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
                                   "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", f"{user}@127.0.0.1", command],
                                  stdin=given, capture_output=True, text=True, timeout=timeout)

    def shutdown(self) -> None:
        """A clean power-off if the board answers, else a cut."""
        if self.qemu is None or self.qemu.poll() is not None:
            return
        try:
            self.ssh("root", "systemctl poweroff", timeout=30)
            self.qemu.wait(timeout=120)
        except (subprocess.TimeoutExpired, OSError):
            pass
        self.power_cut()


def main() -> int:
    """CLI: build the image, or boot it and wait."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["build", "boot"])
    parser.add_argument("--workdir", type=Path, default=Path("build/boot-board"))
    args = parser.parse_args()
    try:
        build(say=lambda line: print(line, flush=True))
        if args.action == "build":
            print(f"board image ready: {CACHE / 'disk.raw'}")
            return 0
        board = Board(args.workdir)
        took = board.boot()
        print(f"booted to sshd in {took:.1f} s: ssh -i {board.client_key} -p {board.port} {USER}@127.0.0.1")
        try:
            board.qemu.wait()
        except KeyboardInterrupt:
            board.shutdown()
        return 0
    except (BootError, arm_board.BoardError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
