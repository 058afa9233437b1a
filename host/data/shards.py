"""A pulled recording folder, read and checked: every listed shard against its sha256, columns joined per run."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.manifest import EdgerlError
from device.record import read_index


class DataError(EdgerlError):
    """A recording cannot be read, or does not replay to what the board recorded."""

    exit_code = 1


@dataclass
class Run:
    """One run of a loop (a `play` or a `serve` from its start): what it was, and its decisions in step order."""

    name: str
    meta: dict[str, Any]
    columns: dict[str, np.ndarray]
    complete_from_start: bool
    """Every decision from the run's first is here (no shard pruned or dropped before the last one kept)."""


def read_recording_index(folder: Path) -> dict[str, Any]:
    """A pulled folder's index, or one line saying why it cannot be read."""
    try:
        return read_index(Path(folder))
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read the recording in {folder}: {err}") from None


def _checked_columns(folder: Path, shard: dict[str, Any]) -> dict[str, np.ndarray]:
    path = folder / shard["file"]
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path} is listed but cannot be read ({err.strerror}); pull the folder again") from None
    if hashlib.sha256(data).hexdigest() != shard["sha256"]:
        raise DataError(f"{path} does not match its sha256 in {folder / 'index.json'}: it changed or was cut "
                        "short; pull it again")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k != "run"}


def read_runs(folder: Path) -> Iterator[Run]:
    """The folder's runs, oldest first, one run's shards in memory at a time.

    A shard whose bytes are not its sha256 is refused in one line.
    """
    folder = Path(folder)
    index = read_recording_index(folder)
    shards_of: dict[str, list[dict[str, Any]]] = {}
    for shard in index["shards"]:
        shards_of.setdefault(shard["run"], []).append(shard)
    for name, meta in index["runs"].items():
        parts = sorted((_checked_columns(folder, shard) for shard in shards_of.get(name, [])),
                       key=lambda c: int(c["step"][0]))
        if not parts:
            continue
        columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        steps = columns["step"]
        whole = bool(steps[0] == 0 and np.all(np.diff(steps) == 1))
        yield Run(name, meta, columns, whole)
