"""The board's recordings for `edgerl data pull`: list them, and prune what the host holds intact (stdlib only).

    python3 .board/<digest>/data.py data-list ROOT                        ->  one JSON line
    python3 .board/<digest>/data.py data-prune ROOT NAME FILE=SHA256...   ->  one JSON line

A recording is a folder `ROOT/data/NAME/` written by `python -m device play|serve --record` (device/record.py):
an index of runs and shards, each shard with its sha256. Pruning edits that index under the lock the recording
loop takes for each of its own edits, unlists the shards first and removes their files after: a cut between the
two leaves a file the next recording start removes, never a listed shard that is gone.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Callable
from typing import Any

# Side by side on the board, top-level modules there; here the deploy.board package (a bare name could be anyone's).
if __package__:
    from deploy.board.durable import fsync_dir, read_json
    from deploy.board.runner import Refused, run_op
else:
    from durable import fsync_dir, read_json
    from runner import Refused, run_op

from device.layout import DATA, RECORD_INDEX, RECORD_LOCK


def stored_name(shard: dict[str, Any]) -> str:
    """A shard's name where it is kept off the board: named by its content (`shard-N-<sha256[:12]>.npz`).

    A shard sent twice is kept once, and a recording restarted from shard 1 never overwrites what came before.
    """
    return f"{shard['file'][:-4]}-{shard['sha256'][:12]}.npz"


def _recording(root: str, name: str) -> str:
    if not name or name.startswith(".") or "/" in name:
        raise Refused(f"no recording {name!r}: a recording is a folder name under {DATA}/")
    return os.path.join(root, DATA, name)


def op_data_list(root: str) -> dict[str, Any]:
    """Every recording's index, by name; what all of them take on disk."""
    folder = os.path.join(root, DATA)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    found = {}
    for name in names:
        index = read_json(os.path.join(folder, name, RECORD_INDEX))
        if index is not None and isinstance(index.get("shards"), list):
            found[name] = index
    total = sum(s.get("bytes", 0) for index in found.values() for s in index["shards"])
    return {"recordings": found, "bytes": total, "shards": sum(len(i["shards"]) for i in found.values())}


def op_data_prune(root: str, name: str, *pulled: str) -> dict[str, Any]:
    """Unlist, then remove, the shards the host pulled intact (FILE=SHA256): only where the board's sum agrees."""
    folder = _recording(root, name)
    wanted = dict(p.split("=", 1) for p in pulled if "=" in p)
    fd = os.open(os.path.join(folder, RECORD_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        index = read_json(os.path.join(folder, RECORD_INDEX))
        if index is None:
            raise Refused(f"{folder} holds no recording index")
        gone = [s["file"] for s in index["shards"] if wanted.get(s["file"]) == s["sha256"]]
        index["shards"] = [s for s in index["shards"] if s["file"] not in gone]
        tmp = os.path.join(folder, f".{RECORD_INDEX}.tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            fh.write(json.dumps(index, indent=1) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, os.path.join(folder, RECORD_INDEX))
        fsync_dir(folder)
    finally:
        os.close(fd)
    for file in gone:
        os.remove(os.path.join(folder, file))
    fsync_dir(folder)
    return {"pruned": gone, "left": len(index["shards"])}


OPS: dict[str, Callable[..., dict[str, Any] | None]] = {"data-list": op_data_list, "data-prune": op_data_prune}


if __name__ == "__main__":
    sys.exit(run_op(OPS, sys.argv[1:]))
