"""Training checkpoints: weights plus the configs that made them, saved atomically."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from device.manifest import CHECKPOINT_FILE, EdgerlError, EnvSpec, creation_mode
from host.policies import PolicyConfig

CHECKPOINT_VERSION = 1
CHECKPOINT = CHECKPOINT_FILE


class CheckpointError(EdgerlError):
    """A checkpoint is missing, unreadable or of another format."""


def resolve(source: Path) -> Path:
    """A run folder or a checkpoint file -> the checkpoint file."""
    source = Path(source)
    path = source / CHECKPOINT if source.is_dir() else source
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; pass a run folder made by `edgerl train` or its {CHECKPOINT}")
    return path


def save_checkpoint(path: Path, policy: PolicyConfig, env: EnvSpec, weights: dict, **extra: Any) -> None:
    """Write the checkpoint to a temporary file and rename it into place."""
    path = Path(path)
    payload = {"version": CHECKPOINT_VERSION, "policy": asdict(policy), "env": asdict(env), "weights": weights, **extra}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, creation_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(source: Path) -> dict[str, Any]:
    """Read a checkpoint safely (weights_only: no arbitrary unpickling)."""
    path = resolve(source)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(err).__name__}); it is corrupt or not an edgerl checkpoint"
        ) from err
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} is not an edgerl checkpoint of version {CHECKPOINT_VERSION}")
    try:
        policy = dict(payload["policy"])
        if "kind" in policy:  # checkpoints written before the field was named for what it is
            policy["network"] = policy.pop("kind")
        payload["policy"] = PolicyConfig(**policy)
        payload["env"] = EnvSpec(**payload["env"])
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path} has malformed configs ({err})") from err
    return payload
