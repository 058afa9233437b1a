"""`edgerl data pull` on one board: its recordings to this host, shard by shard, each checked against its sha256.

A shard is stored as `OUT/<board>/<recording>/shard-N-<sha256[:12]>.npz`: named by its content, so a shard
pulled twice is stored once, and a board whose recording restarted from shard 1 never overwrites what came
before. A rerun after a cut link fetches only what is missing; the local index (the board's runs, and every
shard held here) is rewritten after each recording, so a loader always reads whole, listed shards.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy import board_client
from deploy.board.data import stored_name
from deploy.link.targets import DeployError, Target
from device import layout
from device.layout import sha256_file
from device.manifest import write_json_atomic


@dataclass(frozen=True)
class PullConfig:
    """Where pulled recordings go, and whether the board keeps them."""

    out: Path
    prune: bool = False
    """Delete on the board the shards that arrived intact (and only those)."""


@dataclass
class PullResult:
    """What one board's pull did."""

    board: str
    fetched: int = 0
    already: int = 0
    bytes: int = 0
    pruned: int = 0
    vanished: int = 0
    """Listed when asked, gone when fetched: pruned on the board meanwhile (--record-max-mb)."""
    folders: list[Path] = field(default_factory=list)


def local_name(board: str) -> str:
    """A folder name for a board (its target may hold @, : and /)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", board).strip("._") or "board"


def local_index(folder: Path, board_index: dict[str, Any]) -> dict[str, Any]:
    """The index of a recording held here (or a new one), the board's runs merged in."""
    try:
        index = json.loads((folder / layout.RECORD_INDEX).read_text())
    except (OSError, ValueError):
        index = {"record_version": board_index.get("record_version"), "runs": {}, "shards": []}
    index["runs"].update(board_index.get("runs", {}))
    return index


def _fetch(target: Target, remote: str, dest: Path, sha256: str, what: str) -> int | None:
    """Bring one shard here, checked; its size, or None when the board no longer has it."""
    part = dest.with_name(f".{dest.name}.part")
    try:
        target.get(remote, part)
    except FileNotFoundError:
        return None
    if sha256_file(part) != sha256:
        part.unlink(missing_ok=True)
        raise DeployError(f"{what} arrived damaged (its sha256 differs from the board's index); rerun the pull")
    os.replace(part, dest)
    return dest.stat().st_size


def pull_recording(target: Target, name: str, board_index: dict[str, Any], folder: Path, result: PullResult,
                   say: Callable[[str], None]) -> list[dict[str, Any]]:
    """One recording: every listed shard here and checked; the shards that are (for --prune)."""
    folder.mkdir(parents=True, exist_ok=True)
    index = local_index(folder, board_index)
    held = {s["file"] for s in index["shards"]}
    intact = []
    try:
        for shard in board_index["shards"]:
            stored = folder / stored_name(shard)
            if stored.is_file() and sha256_file(stored) == shard["sha256"]:
                result.already += 1
            else:
                size = _fetch(target, target.path(layout.DATA, name, shard["file"]), stored, shard["sha256"],
                              f"{target.name}: {name}/{shard['file']}")
                if size is None:
                    result.vanished += 1
                    continue
                result.fetched += 1
                result.bytes += size
            intact.append(shard)
            if stored.name not in held:
                index["shards"].append({**shard, "file": stored.name, "board_file": shard["file"]})
                held.add(stored.name)
    finally:  # what arrived is listed even when the link died half-way: a rerun starts from there
        index["shards"].sort(key=lambda s: (s["run"], s["first_step"]))
        write_json_atomic(folder / layout.RECORD_INDEX, index)
    say(f"{target.name}: {name}: {len(intact)} shards here ({result.fetched} fetched now)")
    return intact


def pull(target: Target, board: str, cfg: PullConfig, say: Callable[[str], None] = print) -> PullResult:
    """Every recording of one board into `cfg.out/<board>/`; prune on the board what arrived intact if asked."""
    result = PullResult(board)
    listing = board_client.expect(target, "data-list", target.root, what="listing its recordings")
    if not listing["recordings"]:
        say(f"{target.name}: no recordings in {target.path(layout.DATA)}")
    for name, board_index in sorted(listing["recordings"].items()):
        folder = Path(cfg.out) / local_name(board) / name
        intact = pull_recording(target, name, board_index, folder, result, say)
        result.folders.append(folder)
        if cfg.prune and intact:
            done = board_client.expect(target, "data-prune", target.root, name,
                                       *[f"{s['file']}={s['sha256']}" for s in intact], what="pruning what arrived")
            result.pruned += len(done["pruned"])
    return result
