"""A new machine gets every Debian package the tests open: the make targets install tools/system_needs.py's table,
and the table names, for each file, the package that really ships it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import system_needs  # noqa: E402

ROM_OF_DEVICE = {"virtio-net-pci": "efi-virtio.rom", "e1000": "efi-e1000.rom", "virtio-net-device": None,
                 "virtio-rng-pci": None, "virtio-blk-pci": None}
"""The option ROM qemu loads for a device on the command line (None: the device has none)."""


def owners(path: Path) -> set[str]:
    """The packages dpkg says installed `path` ("pkg-a, pkg-b: /the/path")."""
    done = subprocess.run(["dpkg", "-S", str(path)], capture_output=True, text=True)
    lines = done.stdout.splitlines() if done.returncode == 0 else []
    return {name.strip() for line in lines if ": " in line for name in line.split(": ", 1)[0].split(",")}


@pytest.mark.parametrize("tier", [
    "test",
    pytest.param("board", marks=pytest.mark.arm),  # the qemu packages are the board tier's to install
])
def test_every_file_a_tier_opens_is_here_and_comes_from_the_package_the_table_names(tier):
    assert system_needs.complaints(tier) == []  # each line names the package to add to the install
    for need in system_needs.NEEDS[tier]:
        found = need.found()
        # dpkg knows a file by the path its package installed it at: /sbin/ip behind merged /usr, mkfs.ext4 as itself
        names = {found.name, found.resolve().name}
        candidates = [found, found.resolve(), *(Path(d) / n for d in ("/bin", "/sbin", "/usr/bin", "/usr/sbin")
                                                for n in names)]
        shipped_by = set().union(*(owners(path) for path in candidates))
        assert need.package in shipped_by, f"{need.path} comes from {shipped_by or 'no package'}, not {need.package}"


def test_the_make_targets_install_each_tier_from_the_table():
    makefile = (REPO / "Makefile").read_text()
    recipes = dict(re.findall(r"^([\w-]+):[^\n]*\n\t@?([^\n]+)", makefile, flags=re.M))
    assert "tools/system_needs.py install test" in recipes["sshd"]
    assert "tools/system_needs.py install board" in recipes["board-tools"]
    assert "tools/system_needs.py install bench" in recipes["bench-tools"]
    assert "bench-tools" in dict(re.findall(r"^([\w-]+):([^\n]*)", makefile, flags=re.M))["bench"].split()
    prerequisites = dict(re.findall(r"^([\w-]+):([^\n]*)", makefile, flags=re.M))
    assert "sshd" in prerequisites["test"].split()
    for target in ("test-board", "test-arm", "campaigns", "power-cuts"):
        assert {"sshd", "board-tools"} <= set(prerequisites[target].split()), target
    # the board's builders install this machine's packages through the same table, never a list of their own
    for tool in ("arm_board.py", "boot_board.py"):
        source = (REPO / "tools" / tool).read_text()
        assert '["apt-get", "install"' not in source and "system_needs" in source, tool


def test_every_rom_the_booting_board_loads_is_in_the_table():
    source = (REPO / "tools" / "boot_board.py").read_text()
    devices = [d.split(",")[0] for d in re.findall(r'"-device", "([^"]+)"', source)]
    assert devices, "boot_board.py starts qemu with no -device: this test reads the wrong thing"
    table = {os.path.basename(n.path) for n in system_needs.NEEDS["board"]}
    for device in devices:
        assert device in ROM_OF_DEVICE, f"which ROM does qemu load for -device {device}? add it to ROM_OF_DEVICE"
        rom = ROM_OF_DEVICE[device]
        assert rom is None or rom in table, f"-device {device} loads {rom}: add it and its package to system_needs"
