"""A pulled recording folder, read and checked: every listed shard against its sha256, columns joined per run."""

from __future__ import annotations

import hashlib
import io
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


def read_runs(folder: Path) -> list[Run]:
    """The folder's runs, oldest first; a shard whose bytes are not its sha256 is refused in one line."""
    folder = Path(folder)
    try:
        index = read_index(folder)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read the recording in {folder}: {err}") from None
    by_run: dict[str, list[dict[str, np.ndarray]]] = {}
    for shard in index["shards"]:
        path = folder / shard["file"]
        try:
            data = path.read_bytes()
        except OSError as err:
            raise DataError(f"{path} is listed but cannot be read ({err.strerror}); pull the folder again") from None
        if hashlib.sha256(data).hexdigest() != shard["sha256"]:
            raise DataError(f"{path} does not match its sha256 in {folder / 'index.json'}: it changed or was cut "
                            "short; pull it again")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            by_run.setdefault(shard["run"], []).append({k: npz[k] for k in npz.files if k != "run"})
    runs = []
    for name, meta in index["runs"].items():
        parts = sorted(by_run.get(name, []), key=lambda c: int(c["step"][0]))
        if not parts:
            continue
        columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        steps = columns["step"]
        whole = bool(steps[0] == 0 and np.all(np.diff(steps) == 1))
        runs.append(Run(name, meta, columns, whole))
    return runs
