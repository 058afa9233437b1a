"""`edgerl data pull --channel DIR`: the recordings boards pushed into the channel, laid out as an SSH pull lays them.

The boards' agents PUT each finished shard and their recording's index under `DIR/data/<board>/<recording>/`
(deploy/agent/push.py); this copies them into `OUT/<board>/<recording>/` shard by shard, each checked against the
sha256 its index names, so `host.data.load_episodes` reads them exactly as it reads SSH-pulled ones.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from deploy.channel.keys import ChannelError
from deploy.pull import PullResult, local_index, local_name
from device import layout
from device.layout import sha256_file
from device.manifest import write_json_atomic


def _copy_checked(src: Path, dest: Path, sha256: str) -> bool:
    """Copy one shard if its bytes are the ones its index names; False when they are not (left where it is)."""
    if not src.is_file() or sha256_file(src) != sha256:
        return False
    part = dest.with_name(f".{dest.name}.part")
    shutil.copyfile(src, part)
    os.replace(part, dest)
    return True


def pull_from_channel(channel_dir: Path, out: Path, say: Callable[[str], None] = print) -> list[PullResult]:
    """Every board's pushed recordings into `out/<board>/<recording>/`; a rerun copies only what is missing."""
    area = Path(channel_dir) / "data"
    if not (Path(channel_dir) / ".edgerl-channel").is_file():
        raise ChannelError(f"{channel_dir} is not a channel (made by `edgerl channel init`)")
    results: dict[str, PullResult] = {}
    for index_path in sorted(area.glob(f"*/*/{layout.RECORD_INDEX}")):
        board, name = index_path.parent.parent.name, index_path.parent.name
        result = results.setdefault(board, PullResult(board))
        pushed = json.loads(index_path.read_text())
        folder = Path(out) / local_name(board) / name
        folder.mkdir(parents=True, exist_ok=True)
        index = local_index(folder, pushed)
        held = {s["file"] for s in index["shards"]}
        for shard in pushed["shards"]:
            dest = folder / shard["file"]
            if dest.is_file() and sha256_file(dest) == shard["sha256"]:
                result.already += 1
            elif _copy_checked(index_path.parent / shard["file"], dest, shard["sha256"]):
                result.fetched += 1
                result.bytes += dest.stat().st_size
            else:
                result.vanished += 1  # not (yet) whole on the server: a later pull takes it
                continue
            if shard["file"] not in held:
                index["shards"].append(shard)
                held.add(shard["file"])
        index["shards"].sort(key=lambda s: (s["run"], s["first_step"]))
        write_json_atomic(folder / layout.RECORD_INDEX, index)
        result.folders.append(folder)
        say(f"{board}: {name}: {len(index['shards'])} shards here ({result.fetched} copied now)")
    return list(results.values())
