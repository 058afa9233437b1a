"""The Debian packages each test tier needs, named by the files the tests open, and their install.

    python tools/system_needs.py install test     # what `make test` needs (sshd, ip, tc)
    python tools/system_needs.py install board    # what `make test-board` needs (debootstrap, qemu, its ROMs)
    python tools/system_needs.py install bench    # what `make bench` needs (cyclictest)
    python tools/system_needs.py check board      # exit 1 and one line per missing file, naming its package

One table, read by the make targets (to install) and by the tests (to check), so a package left out of an
install shows on any machine, not only on a fresh one: `qemu-system-arm` installed with
`--no-install-recommends` lacks `ipxe-qemu`, whose ROM virtio-net needs, and only a machine that once had
it installed by hand ever booted the board.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Need:
    """A file a tier's tests open (a binary, or a ROM qemu loads) and the Debian package that ships it."""

    path: str
    """An absolute path, or a command name looked up on PATH."""
    package: str
    why: str

    def found(self) -> Path | None:
        """Where the file is on this machine, or None."""
        if self.path.startswith("/"):
            return Path(self.path) if os.path.exists(self.path) else None
        where = shutil.which(self.path) or shutil.which(self.path, path="/usr/sbin:/sbin:/usr/bin:/bin")
        return Path(where) if where else None


SYSTEM_PYTHON = os.path.basename(os.path.realpath("/usr/bin/python3")) if os.path.exists("/usr/bin/python3") \
    else "python3"
"""Debian's python (python3.11 on bookworm): what a test board's shell runs as `python3`, as a board's does."""

NEEDS: dict[str, tuple[Need, ...]] = {
    "test": (
        Need("/usr/sbin/sshd", "openssh-server", "the deploy tests' boards are real OpenSSH servers"),
        Need("ssh-keygen", "openssh-client", "the tests' host and client keys"),
        Need("ip", "iproute2", "network namespaces and veth links for the link-cut tests"),
        Need("tc", "iproute2", "slow and lossy links"),
        Need(f"/usr/lib/{SYSTEM_PYTHON}/ensurepip/__init__.py", f"{SYSTEM_PYTHON}-venv",
             "a test board that installs its own venv runs `python3 -m venv` with Debian's python"),
        Need("/usr/sbin/nginx", "nginx", "the pull channel's static server (TLS, WebDAV PUT for the boards' reports)"),
        Need("openssl", "openssl", "the channel tests' CA and the boards' htpasswd entries (read from stdin)"),
    ),
    "board": (
        Need("debootstrap", "debootstrap", "the Debian arm64 userland"),
        Need("/usr/bin/qemu-aarch64-static", "qemu-user-static", "aarch64 programs in the chroot"),
        Need("qemu-system-aarch64", "qemu-system-arm", "the booting board"),
        Need("qemu-img", "qemu-utils", "the board's copy-on-write disk"),
        Need("/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu",
             "the ROM of the board's virtio-net-pci (on qemu's firmware path)"),
        Need("mkfs.ext4", "e2fsprogs", "the board's disk image"),
        Need("nc", "netcat-openbsd", "the booting board reaches a test's channel server through qemu's guestfwd"),
        Need("/usr/sbin/nginx", "nginx", "the pull channel's server the booting board polls"),
    ),
    "bench": (
        Need("cyclictest", "rt-tests", "bench/serve_rate.py prints this machine's own wake-up latency as the floor"),
    ),
}


def missing(tier: str) -> list[Need]:
    """What of the tier's table is not on this machine."""
    return [need for need in NEEDS[tier] if need.found() is None]


def _packages_of(needs: list[Need] | tuple[Need, ...]) -> list[str]:
    return list(dict.fromkeys(need.package for need in needs))


def packages(tier: str) -> list[str]:
    """Every package the tier installs, in table order."""
    return _packages_of(NEEDS[tier])


def install(tier: str) -> None:
    """apt-get install what is missing; nothing at all when every file is there."""
    wanted = _packages_of(missing(tier))
    if not wanted:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print(f"installing {' '.join(wanted)} (Debian) for the {tier} tier", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *wanted], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def complaints(tier: str) -> list[str]:
    """One line per missing file: what it is for and the package to install."""
    return [f"{need.path} is missing ({need.why}): apt-get install {need.package}" for need in missing(tier)]


def main(argv: list[str] | None = None) -> int:
    """`install TIER` or `check TIER`: exit 1 with one line per file still missing."""
    parser = argparse.ArgumentParser(description="Install or check the Debian packages a test tier needs.")
    parser.add_argument("action", choices=["install", "check"])
    parser.add_argument("tier", choices=sorted(NEEDS))
    args = parser.parse_args(argv)
    if args.action == "install":
        try:
            install(args.tier)
        except (subprocess.CalledProcessError, FileNotFoundError) as err:
            print(f"error: installing the {args.tier} tier's packages failed ({err}); run as root with apt",
                  file=sys.stderr)
            return 1
    lines = complaints(args.tier)
    for line in lines:
        print(f"error: {line}", file=sys.stderr)
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
