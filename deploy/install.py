"""The board's Python environment: one venv per dependency set, reused across releases.

The device's dependencies are pinned to the versions installed on the host,
which are the versions `edgerl verify` ran. Online boards pip-install them;
offline boards (`--wheelhouse`) get wheels downloaded on the host for the
board's architecture and Python, pushed over the same resumable upload.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from deploy import board_client
from deploy.board import venvs
from deploy.link.targets import DeployError, Target
from device import layout

DEVICE_DEPS = ("numpy", "onnxruntime", "ale-py")
NO_WHEELS = {"armv7l", "armv6l", "i686"}


@dataclass(frozen=True)
class InstallConfig:
    """How the board gets its dependencies."""

    wheelhouse: bool = False
    """Download wheels on the host and install offline on the board."""
    cache: Path = Path("~/.cache/edgerl/wheelhouse")
    requirements: tuple[str, ...] | None = None
    """Override the pinned requirements (default: the host's versions of numpy, onnxruntime, ale-py)."""


def pinned_requirements(cfg: InstallConfig) -> list[str]:
    """numpy, onnxruntime and ale-py at the versions this host has."""
    if cfg.requirements:
        return list(cfg.requirements)
    return [f"{name}=={metadata.version(name)}" for name in DEVICE_DEPS]


def venv_key(requirements: list[str], board: dict[str, Any]) -> str:
    """Name of the venv for these requirements on this kind of board (a board that pulls computes the same)."""
    return venvs.venv_key(requirements, board["machine"], board["python"])


def _platforms(machine: str) -> list[str]:
    return [f"manylinux_2_{minor}_{machine}" for minor in range(17, 40)] + [f"manylinux2014_{machine}"]


def download_wheels(requirements: list[str], board: dict[str, Any], cfg: InstallConfig, key: str) -> Path:
    """Wheels for the board's platform, fetched on the host (cached)."""
    machine = board["machine"]
    if machine in NO_WHEELS:
        raise DeployError(f"the board is {machine} (a 32-bit OS): onnxruntime and ale-py publish no wheels for it; "
                          "install a 64-bit OS (e.g. 64-bit Raspberry Pi OS, aarch64)")
    dest = cfg.cache.expanduser() / key
    if (dest / ".complete").is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    pyver = board["python"].replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:",
           "--implementation", "cp", "--python-version", pyver, "-d", str(dest)]
    for plat in _platforms(machine):
        cmd += ["--platform", plat]
    done = subprocess.run(cmd + requirements, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip download failed"])[-1]
        raise DeployError(f"no wheels for {machine} / Python {board['python']} for {' '.join(requirements)}: {last}")
    (dest / ".complete").write_text("\n".join(requirements))
    return dest


def ensure_venv(target: Target, board: dict[str, Any], cfg: InstallConfig, say: Callable[[str], None] = print,
                still_wanted: Callable[[], None] = lambda: None) -> tuple[str, str, bool]:
    """(venv python path, venv name, reused?) for the device's requirements on this board.

    `still_wanted` is asked at each line pip prints and raises to stop: an install takes a minute on a Pi, too
    long to make a user who pressed Ctrl-C wait for it. The step's process ends with its link (SSH) or is killed
    (local:); the venv it leaves is not marked complete, so nothing lists it and the next deploy replaces it.
    """
    requirements = pinned_requirements(cfg)
    key = venv_key(requirements, board)
    venv = target.path(layout.VENVS, key)
    python = f"{venv}/bin/python"
    if target.exists(f"{venv}/{layout.VENV_COMPLETE}"):
        say(f"{target.name}: reusing venv {key}")
        return python, key, True
    wheels = download_wheels(requirements, board, cfg, key) if cfg.wheelhouse else None
    target.run(["rm", "-rf", venv])
    target.check(["mkdir", "-p", target.path(layout.VENVS)], "creating venvs/")
    target.check(["python3", "-m", "venv", venv], "creating the venv (install python3-venv on the board)",
                 timeout=600)
    pip_flags = ["install", "--disable-pip-version-check", "--progress-bar", "off"]

    def progress(line: str) -> None:
        still_wanted()
        if line.startswith(("Collecting", "Installing", "Successfully")):
            say(f"{target.name}:   {line.strip()}")

    def pip(what: str, *args: str) -> None:
        # The board module's pip op sends pip's stdout to stderr, which is streamed line by line.
        board_client.expect(target, "pip", *pip_flags, *args, what=what, python=python, timeout=900,
                            on_line=progress)

    started = time.monotonic()
    if wheels is not None:
        remote = target.path(layout.WHEELHOUSE, key)
        target.check(["mkdir", "-p", remote], "creating the wheelhouse")
        for wheel in sorted(wheels.glob("*.whl")):
            if not target.exists(f"{remote}/{wheel.name}"):
                target.put(wheel, f"{remote}/{wheel.name}.part")
                target.rename(f"{remote}/{wheel.name}.part", f"{remote}/{wheel.name}")
        say(f"{target.name}: installing {' '.join(requirements)} from the pushed wheelhouse (offline; once per "
            "kind of board, about a minute)")
        pip("offline pip install", "--no-index", "--find-links", remote, *requirements)
    else:
        say(f"{target.name}: installing {' '.join(requirements)} with pip (online; once per kind of board, "
            "about a minute)")
        pip("pip install on the board (no internet there? use --wheelhouse)", *requirements)
    target.check(["touch", f"{venv}/{layout.VENV_COMPLETE}"], "marking the venv complete")
    say(f"{target.name}: venv {key} ready in {time.monotonic() - started:.0f} s")
    return python, key, False
