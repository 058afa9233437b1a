"""Recording on the board: what the policy saw and did, in shards a power cut cannot tear (numpy only).

    DIR/index.json          the runs (what was played, how) and the shards, each with its sha256; replaced last
    DIR/shard-000001.npz    one run's decisions, a column per field (written whole, then renamed in)

A game run records its seed, every action, reward and episode end, and the CRC-32 of every screen: the host
regenerates the screens (ALE is deterministic) and checks them against the CRCs. A run on the user's plant
records each decision's observation as it was (`obs.NAME`), its action, and the reward and episode end when the
I/O class reports them (`outcome()`). The control loop only appends to a bounded queue; a writer thread makes the
shards. When the queue is full the oldest pending decisions are dropped and counted: the loop never waits.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.layout import RECORD_INDEX, RECORD_LOCK

RECORD_VERSION = 1
INDEX = RECORD_INDEX
SHARD_DECISIONS = 1024
"""Decisions per shard: 68 s of Pong, 20 s at 50 Hz; what a power cut may lose at most, with the queue."""
QUEUE_DECISIONS = 8192
"""Pending decisions the writer may fall behind by before the oldest are dropped."""
FLUSH_S = 10.0
"""A shard is written at least this often, however few decisions it holds (a slow loop's record still lands)."""


@dataclass(frozen=True)
class RecordConfig:
    """Where and how much a loop records."""

    folder: Path
    max_mb: float | None = None
    """Delete the oldest shards to keep the folder's shards under this many MB (None: no bound)."""
    shard_decisions: int = SHARD_DECISIONS
    queue_decisions: int = QUEUE_DECISIONS


def fsync_folder(path: Path) -> None:
    """Make a rename or removal in this folder survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_whole(path: Path, data: bytes) -> None:
    """Write `data` under a temporary name, fsync, rename it in, fsync the folder: old or new, never torn."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the board's user only
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def shard_bytes(columns: dict[str, np.ndarray]) -> bytes:
    """One shard's file content (npz, uncompressed: the board's CPU belongs to the loop)."""
    buffer = io.BytesIO()
    np.savez(buffer, **columns)
    return buffer.getvalue()


@contextlib.contextmanager
def index_lock(folder: Path) -> Iterator[None]:
    """Held while the index is read and rewritten: a pull pruning on the board may edit it beside the loop."""
    fd = os.open(Path(folder) / RECORD_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_index(folder: Path) -> dict[str, Any]:
    """The folder's index, or a new empty one."""
    try:
        index = json.loads((folder / INDEX).read_text())
    except FileNotFoundError:
        return {"record_version": RECORD_VERSION, "runs": {}, "shards": []}
    if not isinstance(index, dict) or index.get("record_version") != RECORD_VERSION:
        raise ValueError(f"{folder / INDEX} is not a version-{RECORD_VERSION} recording index")
    return index


def _adopt_or_remove(folder: Path, index: dict[str, Any]) -> None:
    """After a power cut: temporaries go; a whole shard renamed in before the index was rewritten is listed."""
    listed = {s["file"] for s in index["shards"]}
    for path in sorted(folder.iterdir()):
        shard = path.name.startswith("shard-") and path.name.endswith(".npz") and path.name[6:-4].isdigit()
        if shard:  # a number once used is never used again: a host may hold a pulled shard of that name
            index["next_shard"] = max(index.get("next_shard", 1), int(path.name[6:-4]) + 1)
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
        elif shard and path.name not in listed:
            data = path.read_bytes()
            try:
                with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                    run, first, count = str(npz["run"]), int(npz["step"][0]), len(npz["step"])
            except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile):  # torn
                path.unlink(missing_ok=True)
                continue
            index["shards"].append({"file": path.name, "sha256": hashlib.sha256(data).hexdigest(),
                                    "bytes": len(data), "run": run, "first_step": first, "decisions": count})
    index["shards"].sort(key=lambda s: s["file"])


class Recorder:
    """A run's recording: `add` from the loop (never blocks), shards from a writer thread, `close` at the end."""

    def __init__(self, cfg: RecordConfig, run_meta: dict[str, Any]) -> None:
        self.cfg, self.folder = cfg, Path(cfg.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{os.urandom(2).hex()}"

        def begin(index: dict[str, Any]) -> None:
            _adopt_or_remove(self.folder, index)
            index["runs"][self.run] = {**run_meta, "started_at": time.time()}

        self.shards, self.bytes = 0, 0
        self._update_index(begin)
        self.pending: deque[dict[str, Any]] = deque()
        self.lock, self.wake, self.closing = threading.Lock(), threading.Event(), False
        self.step, self.recorded, self.dropped, self.write_errors, self.pruned = 0, 0, 0, 0, 0
        self.writer = threading.Thread(target=self._write_loop, name="edgerl-recorder", daemon=True)
        self.writer.start()

    def add(self, decision: dict[str, Any]) -> None:
        """Queue one decision; when the queue is full, the oldest pending one is dropped (and counted)."""
        decision["step"] = self.step
        self.step += 1
        with self.lock:
            if len(self.pending) >= self.cfg.queue_decisions:
                self.pending.popleft()
                self.dropped += 1
            self.pending.append(decision)
            full = len(self.pending) >= self.cfg.shard_decisions
        if full:
            self.wake.set()

    def figures(self) -> dict[str, Any]:
        """For the status file: decisions written, dropped, and what the folder's shards take."""
        return {"folder": str(self.folder), "run": self.run, "recorded": self.recorded, "dropped": self.dropped,
                "write_errors": self.write_errors, "shards": self.shards, "pruned": self.pruned, "bytes": self.bytes}

    def close(self, timeout: float = 30.0) -> None:
        """Write what is pending and stop the writer."""
        self.closing = True
        self.wake.set()
        self.writer.join(timeout)

    def _write_loop(self) -> None:
        while True:
            self.wake.wait(FLUSH_S)
            self.wake.clear()
            closing = self.closing
            while True:
                with self.lock:
                    batch = [self.pending.popleft()
                             for _ in range(min(len(self.pending), self.cfg.shard_decisions))]
                if not batch:
                    break
                try:
                    self._write_shard(batch)
                except (OSError, ValueError):  # a full disk, a folder gone or an index edited by hand: the
                    with self.lock:            # record loses this batch, the loop loses nothing
                        self.write_errors += 1
                        self.dropped += len(batch)  # add() counts its drops under this lock too
                if not closing and len(batch) < self.cfg.shard_decisions:
                    break
            if closing:
                return

    def _write_shard(self, batch: list[dict[str, Any]]) -> None:
        with index_lock(self.folder):
            number = read_index(self.folder).get("next_shard", 1)
        name = f"shard-{number:06d}.npz"
        columns = {key: np.stack([np.asarray(d[key]) for d in batch]) for key in batch[0]}
        columns["run"] = np.array(self.run)
        data = shard_bytes(columns)
        write_whole(self.folder / name, data)
        entry = {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "run": self.run,
                 "first_step": int(batch[0]["step"]), "decisions": len(batch)}

        def listed(index: dict[str, Any]) -> None:
            index["next_shard"] = max(index.get("next_shard", 1), number + 1)
            index["shards"].append(entry)

        self._update_index(listed)
        self.recorded += len(batch)
        self._prune()

    def _prune(self) -> None:
        if self.cfg.max_mb is None:
            return
        limit = self.cfg.max_mb * 1e6
        gone: list[str] = []

        def oldest_out(index: dict[str, Any]) -> None:
            while len(index["shards"]) > 1 and sum(s["bytes"] for s in index["shards"]) > limit:
                gone.append(index["shards"].pop(0)["file"])

        self._update_index(oldest_out)  # unlisted first: a cut before the removal leaves a file, never a gap
        for name in gone:
            (self.folder / name).unlink(missing_ok=True)
        self.pruned += len(gone)

    def _update_index(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Read, change and rewrite the index under its lock."""
        with index_lock(self.folder):
            index = read_index(self.folder)
            change(index)
            write_whole(self.folder / INDEX, (json.dumps(index, indent=1) + "\n").encode())
        # Counted here, in the writer thread, once per index change: the loop's status report only reads them.
        self.shards, self.bytes = len(index["shards"]), sum(s["bytes"] for s in index["shards"])
