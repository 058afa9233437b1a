"""Recordings pushed back: the board's finished shards PUT to the channel's data area, pruned once it holds them.

    data/<board>/<recording>/shard-N-<sha256[:12]>.npz    each shard, named by its content (a re-send is harmless)
    data/<board>/<recording>/index.json                    every shard pushed so far and the recording's runs

Resumable shard by shard: what the server holds whole (its length read back) is listed in the board's
`channel/pushed-<recording>.json` and never sent again; a cut costs at most the shard in flight. A shard is pruned
on the board only after the server holds it and the index naming it. nginx writes a PUT to a temporary file and
renames it, so the server never holds half a shard under its name.
"""

from __future__ import annotations

import json
import os
from typing import Any

if __package__:
    from deploy.agent.fetch import ChannelHttp
    from deploy.agent.state import AgentConfig
    from deploy.board import data
    from deploy.board.durable import read_json, write_durably
else:
    import data
    from durable import read_json, write_durably
    from fetch import ChannelHttp
    from state import AgentConfig

from device import layout

DATA = "data"


def _ledger(cfg: AgentConfig, name: str) -> tuple[str, dict[str, Any]]:
    path = os.path.join(cfg.folder, f"pushed-{name}.json")
    return path, read_json(path) or {"runs": {}, "shards": []}


def push_recording(root: str, cfg: AgentConfig, http: ChannelHttp, creds: tuple[str, str], name: str,
                   index: dict[str, Any]) -> dict[str, int]:
    """One recording's new shards to the server, its index after them, then the board's copies pruned."""
    path, ledger = _ledger(cfg, name)
    held = {s["board_file"]: s["sha256"] for s in ledger["shards"]}
    sent = 0
    for shard in index["shards"]:
        if held.get(shard["file"]) == shard["sha256"]:
            continue
        where = f"{DATA}/{cfg.board}/{name}/{data.stored_name(shard)}"
        with open(os.path.join(root, layout.DATA, name, shard["file"]), "rb") as fh:
            body = fh.read()
        if http.put_bytes(where, body, *creds) not in (200, 201, 204) or http.length(where, *creds) != len(body):
            break  # the next poll sends it again
        ledger["shards"].append({**shard, "file": data.stored_name(shard), "board_file": shard["file"]})
        held[shard["file"]] = shard["sha256"]
        sent += 1
        write_durably(path, json.dumps(ledger))
    ledger["runs"].update(index.get("runs", {}))
    ledger["record_version"] = index.get("record_version")
    write_durably(path, json.dumps(ledger))
    if http.put_bytes(f"{DATA}/{cfg.board}/{name}/{layout.RECORD_INDEX}", json.dumps(ledger, indent=1).encode(),
                      *creds) not in (200, 201, 204):
        return {"sent": sent, "pruned": 0}
    done = [f"{s['file']}={s['sha256']}" for s in index["shards"] if held.get(s["file"]) == s["sha256"]]
    pruned = data.op_data_prune(root, name, *done)["pruned"] if done else []
    return {"sent": sent, "pruned": len(pruned)}


def push_recordings(root: str, cfg: AgentConfig, http: ChannelHttp) -> dict[str, int]:
    """Every recording of the board's data/ that has shards the server lacks; totals of shards sent and pruned."""
    creds = cfg.credentials()
    totals = {"sent": 0, "pruned": 0}
    if creds is None:
        return totals
    for name, index in sorted(data.op_data_list(root)["recordings"].items()):
        for key, value in push_recording(root, cfg, http, creds, name, index).items():
            totals[key] += value
    return totals
