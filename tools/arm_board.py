"""An emulated aarch64 board: a Debian arm64 userland under qemu user-mode emulation.

    python tools/arm_board.py build      # ~10-15 min the first time; cached in ~/.cache/edgerl/arm64-rootfs
    python tools/arm_board.py run -- python3 -c "import platform; print(platform.machine())"

Needs root, Debian's debootstrap and qemu-user-static, and binfmt_misc (mounted
and registered here if missing). The device's dependencies are the real
aarch64 wheels from PyPI, installed in a venv inside the userland.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import system_needs  # noqa: E402

CACHE = Path(os.environ.get("EDGERL_ARM_ROOTFS", "~/.cache/edgerl/arm64-rootfs")).expanduser()
VENV = "/opt/edgerl-venv"
CODE = "/opt/edgerl"
MIRROR = "http://deb.debian.org/debian"
BINFMT = "/proc/sys/fs/binfmt_misc"
QEMU = "/usr/bin/qemu-aarch64-static"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
# The kernel recognises aarch64 ELF files by this header and hands them to qemu
# ('F': the interpreter is opened now, so it also works inside the chroot).
REGISTER = (r":qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:"
            r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:" + QEMU + ":F")


class BoardError(Exception):
    """The emulated board cannot be built or used here."""


def _sh(argv: list[str], **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, **kw)


def ensure_tools() -> None:
    """debootstrap and qemu-user-static from Debian (tools/system_needs.py's board tier)."""
    if not system_needs.missing("board"):
        return
    if os.geteuid() != 0:
        raise BoardError("the ARM board needs root to install " + " ".join(system_needs.packages("board")))
    system_needs.install("board")
    if system_needs.missing("board"):
        raise BoardError("; ".join(system_needs.complaints("board")))


def ensure_binfmt() -> None:
    """Mount binfmt_misc and register qemu-aarch64 if the kernel does not know it yet."""
    if not Path(BINFMT, "register").exists():
        done = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT], capture_output=True, text=True)
        if done.returncode != 0:
            raise BoardError(f"cannot mount binfmt_misc ({done.stderr.strip()}): aarch64 programs cannot run here")
    if not Path(BINFMT, "qemu-aarch64").exists():
        # The kernel decodes the \xHH escapes itself; decoding them here would write bytes
        # above 0x7f as two-byte UTF-8 and the kernel would refuse the rule (EINVAL).
        Path(BINFMT, "register").write_bytes(REGISTER.encode("ascii"))


def ready(rootfs: Path = CACHE) -> bool:
    """The userland and its venv are complete."""
    return (rootfs / "opt" / ".edgerl-ready").is_file()


def build(rootfs: Path = CACHE, say=print) -> Path:  # noqa: ANN001
    """Build (or finish building) the cached userland with the device's wheels installed."""
    ensure_tools()
    ensure_binfmt()
    if ready(rootfs):
        return rootfs
    if not (rootfs / "debootstrap").exists() and not (rootfs / "usr" / "bin" / "python3").exists():
        say(f"debootstrap stage 1 into {rootfs}")
        shutil.rmtree(rootfs, ignore_errors=True)
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        _sh(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase",
             "--include=python3,python3-venv,python3-pip,ca-certificates", "bookworm", str(rootfs), MIRROR])
    if (rootfs / "debootstrap").exists():
        say("debootstrap stage 2 under qemu (slow)")
        _sh([CHROOT, str(rootfs), "/debootstrap/debootstrap", "--second-stage"])
    # The board gets its wheels the way an offline board does with `edgerl deploy --wheelhouse`:
    # downloaded on the host for aarch64 and its Python, installed with --no-index.
    from deploy.install import InstallConfig, download_wheels, venv_key

    board = board_of(rootfs)
    say(f"downloading aarch64 / Python {board['python']} wheels for {' '.join(requirements())} on the host")
    wheels = download_wheels(requirements(), board, InstallConfig(wheelhouse=True), venv_key(requirements(), board))
    target = rootfs / "opt" / "wheels"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(wheels, target)
    say("installing them in a venv on the board (offline)")
    clean = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    _sh([CHROOT, str(rootfs), "python3", "-m", "venv", VENV], env=clean)
    _sh([CHROOT, str(rootfs), f"{VENV}/bin/pip", "install", "-q", "--disable-pip-version-check", "--no-index",
         "--find-links", "/opt/wheels", *requirements()], env=clean)
    (rootfs / "opt" / ".edgerl-ready").write_text("ok\n")
    return rootfs


def board_of(rootfs: Path) -> dict[str, str]:
    """The userland as `edgerl deploy` probes a board (deploy.install.venv_key's input): machine and Python."""
    pyver = subprocess.run([CHROOT, str(rootfs), "python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                           check=True, capture_output=True, text=True).stdout.strip()
    return {"machine": "aarch64", "python": pyver}


def requirements() -> list[str]:
    """The host's versions of the device's dependencies, as deploy pins them."""
    from importlib import metadata

    from deploy.install import DEVICE_DEPS

    return [f"{n}=={metadata.version(n)}" for n in DEVICE_DEPS]


def install_code(rootfs: Path = CACHE) -> None:
    """Copy this checkout's device package onto the board."""
    dest = rootfs / CODE.lstrip("/") / "device"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(Path(__file__).resolve().parents[1] / "device", dest,
                    ignore=shutil.ignore_patterns("__pycache__"))


def ensure_sshd_installed(rootfs: Path = CACHE) -> None:
    """openssh-server inside the userland (Debian's arm64 package, services not started)."""
    if (rootfs / "usr" / "sbin" / "sshd").is_file():
        return
    policy = rootfs / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
           "DEBIAN_FRONTEND": "noninteractive"}
    _sh([CHROOT, str(rootfs), "sh", "-c", "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
         "openssh-server"], env=env, stdout=subprocess.DEVNULL)


def start_sshd(port: int, authorized_key: Path, host_key: Path, rootfs: Path = CACHE) -> subprocess.Popen:
    """The board's own (aarch64) sshd on 127.0.0.1:port, logging in as root with one authorised key."""
    ensure_binfmt()
    ensure_sshd_installed(rootfs)
    etc = rootfs / "etc" / "ssh"
    shutil.copy(host_key, etc / "edgerl_host_key")
    (etc / "edgerl_host_key").chmod(0o600)
    shutil.copy(authorized_key, etc / "edgerl_authorized_keys")
    (etc / "edgerl_sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey /etc/ssh/edgerl_host_key\n"
        "AuthorizedKeysFile /etc/ssh/edgerl_authorized_keys\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin yes\nStrictModes no\nUsePAM no\n"
        "Subsystem sftp internal-sftp\nPidFile /run/edgerl-sshd.pid\nLogLevel ERROR\n"
        "SetEnv PATH=/usr/local/bin:/usr/bin:/bin\n"
    )
    (rootfs / "run" / "sshd").mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    return subprocess.Popen([CHROOT, str(rootfs), "/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/edgerl_sshd_config"],
                            env=env, stderr=subprocess.PIPE, text=True)


def run(argv: list[str], rootfs: Path = CACHE, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run a command on the emulated board (device package on PYTHONPATH)."""
    ensure_binfmt()
    env = {"PATH": f"{VENV}/bin:/usr/bin:/bin", "PYTHONPATH": CODE, "HOME": "/root", "LANG": "C.UTF-8"}
    return subprocess.run([CHROOT, str(rootfs), *argv], capture_output=True, text=True, env=env, timeout=timeout)


def main() -> int:
    """CLI: build, or run a command on the board."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["build", "run"])
    parser.add_argument("argv", nargs="*")
    args = parser.parse_args()
    try:
        if args.action == "build":
            print(f"board ready: {build()}")
            return 0
        install_code()
        done = run(args.argv)
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        return done.returncode
    except (BoardError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
