"""A fleet of twelve boards for the rollout tests: twelve real sshd on loopback, one Ansible INI inventory.

The inventory is what a user keeps: two groups (`canary`: pi01, `rest`: the
range pi[02:12]), connection variables for all in `[all:vars]`, and each
board's port and folder in `host_vars/<name>.yml`, read by Ansible itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
BOARDS = 12


@dataclass
class Fleet:
    """Twelve boards, the files that reach them, and what each runs."""

    world: Any
    """conftest's SshWorld: the client's key, known_hosts, ssh config, the shared venvs."""
    servers: dict[str, Any]
    dirs: dict[str, Path]
    inventory: Path
    known_hosts: Path
    venv_key: str
    releases: dict[str, str] = field(default_factory=dict)
    """The release each bundle became when the whole fleet was last deployed to it."""

    @property
    def names(self) -> list[str]:
        return list(self.servers)

    def flags(self) -> list[str]:
        return ["--inventory", str(self.inventory), "--known-hosts", str(self.known_hosts),
                "--ssh-config", str(self.world.ssh_config)]

    def cli(self, *args: object, timeout: float = 900) -> Any:
        return self.world.cli(*args, *self.flags(), timeout=timeout)

    def popen(self, *args: object) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "host.cli", *map(str, args), *self.flags()],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.world.env(),
                                cwd=REPO)

    def current(self, name: str) -> str | None:
        link = self.dirs[name] / "current"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def currents(self) -> dict[str, str | None]:
        return {name: self.current(name) for name in self.names}

    def break_board(self, name: str) -> None:
        """This board's runtime lacks onnxruntime (a board image that differs): every self-test fails there."""
        venvs = self.dirs[name] / "venvs"
        venvs.unlink()
        venvs.mkdir()
        # A tree of symlinks to the shared venv, minus onnxruntime: cheap, and the shared venv is untouched.
        subprocess.run(["cp", "-as", str(self.world.venvs / self.venv_key), str(venvs / self.venv_key)], check=True)
        for package in (venvs / self.venv_key).glob("lib/python*/site-packages/onnxruntime"):
            shutil.rmtree(package)

    def mend_board(self, name: str) -> None:
        venvs = self.dirs[name] / "venvs"
        if not venvs.is_symlink():
            shutil.rmtree(venvs)
            venvs.symlink_to(self.world.venvs)

    def freeze(self, name: str) -> None:
        """The board's sshd stops answering (a hung board): connections open, nothing comes back."""
        self.servers[name].proc.send_signal(signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        self.servers[name].proc.send_signal(signal.SIGCONT)


def inventory_text(key: Path) -> str:
    return ("# the lab's boards\n[canary]\npi01\n\n[rest]\npi[02:12]\n\n"
            f"[all:vars]\nansible_host=127.0.0.1\nansible_user=root\nansible_ssh_private_key_file={key}\n")


def make_fleet(world: Any, start_sshd: Callable[..., Any], root: Path, venv_key: str) -> Fleet:
    names = [f"pi{i:02d}" for i in range(1, BOARDS + 1)]
    servers = {n: start_sshd(root / f"sshd-{n}", Path(f"{world.key}.pub")) for n in names}
    inventory = root / "inventory" / "hosts.ini"
    (inventory.parent / "host_vars").mkdir(parents=True)
    inventory.write_text(inventory_text(world.key))
    dirs = {}
    for name, server in servers.items():
        dirs[name] = root / "boards" / name
        dirs[name].mkdir(parents=True)
        (dirs[name] / "venvs").symlink_to(world.venvs)
        (inventory.parent / "host_vars" / f"{name}.yml").write_text(
            f"ansible_port: {server.port}\nedgerl_board_dir: {dirs[name]}\n")
    known = root / "known_hosts"
    known.write_text("".join(world.known_line(s) for s in servers.values()))
    return Fleet(world, servers, dirs, inventory, known, venv_key)


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 600) -> list[str]:
    """Read the command's output until a line holds `needle`; every line read so far."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if needle in line:
            return lines
    raise AssertionError(f"never saw {needle!r}; output so far:\n" + "\n".join(lines))


def everyone_on(fleet, bundle) -> str:
    """Bring every board to one release at once (no waves): the starting point of a rollout.

    Where an earlier test left every board on this bundle's release (a stopped or rolled-back rollout does), that
    is already the starting point: twelve more deploys of it would prove nothing new and cost a minute.
    """
    known = fleet.releases.get(str(bundle))
    if known is not None and set(fleet.currents().values()) == {known}:
        return known
    done = fleet.cli("deploy", bundle)
    assert done.returncode == 0, done.stdout + done.stderr
    (release,) = set(fleet.currents().values())
    fleet.releases[str(bundle)] = release
    return release
