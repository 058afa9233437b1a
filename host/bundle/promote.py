"""`edgerl promote`: replace a shipped bundle only by one that plays better on the device loop."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from device.manifest import MANIFEST, EdgerlError, load_bundle


class PromoteError(EdgerlError):
    """The candidate cannot be judged against the shipped bundle."""


@dataclass(frozen=True)
class PromoteConfig:
    """Which bundle may replace which."""

    candidate: Path
    target: Path


def evaluated_mean(bundle: Path) -> float | None:
    """The mean device-loop score recorded by `edgerl evaluate`, or None when the bundle has none."""
    evaluation = load_bundle(bundle).provenance.get("evaluation")
    return None if not evaluation else float(evaluation["mean"])


def promote(cfg: PromoteConfig) -> tuple[bool, str]:
    """Copy the candidate over the target if its evaluated mean is higher; returns (replaced, one line why)."""
    new = evaluated_mean(cfg.candidate)
    if new is None:
        raise PromoteError(f"{cfg.candidate} has no evaluation; run `edgerl evaluate {cfg.candidate}` first")
    old = evaluated_mean(cfg.target) if (cfg.target / MANIFEST).is_file() else None
    if old is not None and new <= old:
        return False, f"kept {cfg.target}: its mean {old:+.2f} is not beaten by {cfg.candidate}'s {new:+.2f}"
    # Build the new copy beside the target and swap: a failure half-way leaves the old bundle in place.
    staging = cfg.target.with_name(f".{cfg.target.name}.new")
    retired = cfg.target.with_name(f".{cfg.target.name}.old")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(retired, ignore_errors=True)
    shutil.copytree(cfg.candidate, staging)
    load_bundle(staging)  # the copy is intact before anything is replaced
    if cfg.target.exists():
        cfg.target.rename(retired)
    staging.rename(cfg.target)
    shutil.rmtree(retired, ignore_errors=True)
    before = "nothing" if old is None else f"mean {old:+.2f}"
    return True, f"replaced {cfg.target} ({before}) by {cfg.candidate} (mean {new:+.2f})"
