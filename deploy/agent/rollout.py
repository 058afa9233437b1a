"""The channel's contract with its boards: target names, the rollout record, and who is in a stage.

Stdlib only: the host's `edgerl publish` writes what the board's agent reads, both from these names.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

ROLLOUT_TARGET = "rollout.json"
"""The target whose signed `custom["edgerl"]` is the rollout (its file holds the same JSON)."""
RELEASES_PREFIX = "releases"
"""A release's files are the targets `releases/<release id>/<path in the release>`."""
SUMS_NAME = "SHA256SUMS"
WHEELS_PREFIX = "wheels"
"""The wheels of a venv are the targets `wheels/<venv key>/<wheel file>` (`publish --wheels-for`)."""
WHEEL_KIND = re.compile(r"([a-z0-9_]+):(3\.[0-9]+)")
REPORTS = "reports"
"""Where boards PUT `reports/<board>/report.json` (the server lets each board write only its own folder)."""
BOARD_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
STAGE_BUCKETS = 10_000
"""A stage is a share of these buckets, in basis points (`stage_bp`: 1 % is 100; TUF's canonical JSON has no
floats), so small stages of large fleets are fair too."""


def release_target(release: str, name: str) -> str:
    """The target path of one file of a release."""
    return f"{RELEASES_PREFIX}/{release}/{name}"


def wheel_target(key: str, name: str) -> str:
    """The target path of one wheel of the venv `key`."""
    return f"{WHEELS_PREFIX}/{key}/{name}"


def wheel_kind(machine: str, python: str) -> str:
    """A kind of board as `--wheels-for` names it: 'aarch64:3.11'."""
    return f"{machine}:{python}"


def parse_wheel_kind(text: str) -> tuple[str, str]:
    """'aarch64:3.11' -> ('aarch64', '3.11'); ValueError with the reason for anything else."""
    found = WHEEL_KIND.fullmatch(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not a kind of board: MACHINE:PYTHON as the board says them "
                         "(`uname -m` and python3's major.minor), e.g. aarch64:3.11")
    return found.group(1), found.group(2)


def bucket(board: str, release: str) -> int:
    """Where a board falls for a release: stable, so a stage only ever grows and a board never flips."""
    return int(hashlib.sha256(f"{board}\0{release}".encode()).hexdigest()[:8], 16) % STAGE_BUCKETS


def in_stage(board: str, release: str, stage_bp: int) -> bool:
    """Whether the board takes the release at this stage (in basis points, 0 to 10000)."""
    return bucket(board, release) < stage_bp


def basis_points(percent: float) -> int:
    """10.5 (%) -> 1050."""
    return round(percent * STAGE_BUCKETS / 100)


def parse_stage(text: str) -> float:
    """'10%' or '10' -> 10.0; ValueError with the reason for anything else."""
    number = text.strip().removesuffix("%")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a stage: a percentage from 0 to 100, e.g. 10%") from None
    if not 0 <= value <= 100:
        raise ValueError(f"{text!r} is not a stage: a percentage from 0 to 100, e.g. 10%")
    return value


def check_rollout(rollout: Any) -> dict[str, Any]:
    """The rollout record as the board reads it, or ValueError naming what is missing."""
    if not isinstance(rollout, dict) or not isinstance(rollout.get("release"), str):
        raise ValueError("the channel's rollout record has no release")
    if not isinstance(rollout.get("stage_bp"), int) or not isinstance(rollout.get("requirements"), list):
        raise ValueError("the channel's rollout record has no stage or requirements")
    wheels = rollout.get("wheels", {})
    if not isinstance(wheels, dict) or not all(isinstance(v, list) for v in wheels.values()):
        raise ValueError("the channel's rollout record names its wheels wrongly")
    return rollout
