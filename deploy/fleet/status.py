"""`edgerl status --inventory`: every board's line, all asked at once, the whole table bounded in time.

A board that does not answer within the silence timeout (a dead link, a
frozen sshd) is marked as such with when it last answered, which this host
remembers in ~/.cache/edgerl/last-seen.json.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from deploy import board_client
from deploy.fleet.inventory import Board
from deploy.link.ssh import SshOptions
from deploy.link.targets import DeployError
from deploy.remote_run import open_target

SEEN = Path.home() / ".cache" / "edgerl" / "last-seen.json"


def _ask(board: Board, opts: SshOptions) -> dict[str, Any]:
    started = time.monotonic()
    try:
        with open_target(board.target, board.options(opts)) as target:
            reply = board_client.expect(target, "fleet-status", target.root, what="reading its status")
    except DeployError as err:
        return {"board": board.name, "answered": False, "error": str(err)}
    reply.pop("ok", None)
    return {"board": board.name, "answered": True, "seconds": round(time.monotonic() - started, 2), **reply}


def _remember(rows: list[dict[str, Any]], seen_file: Path) -> None:
    try:
        seen = json.loads(seen_file.read_text()) if seen_file.is_file() else {}
    except (OSError, ValueError):
        seen = {}
    now = time.time()
    for row in rows:
        if row["answered"]:
            seen[row["board"]] = now
        row["last_seen"] = seen.get(row["board"])
    try:
        seen_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = seen_file.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(seen, indent=1, sort_keys=True))
        os.replace(tmp, seen_file)
    except OSError:
        pass  # the table matters more than the memory of it


def fleet_status(boards: list[Board], opts: SshOptions, workers: int = 32,
                 seen_file: Path = SEEN) -> list[dict[str, Any]]:
    """Every board's status row, in inventory order; boards silent past the bound are marked unanswered."""
    # Connecting, then one op, each bounded by the silence timeout; a little more for the thread pool itself.
    bound = opts.connect_timeout + 2 * opts.silence_timeout + 5
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(boards))))
    futures = {board.name: pool.submit(_ask, board, opts) for board in boards}
    wait(list(futures.values()), timeout=bound)
    pool.shutdown(wait=False, cancel_futures=True)
    rows = [futures[b.name].result() if futures[b.name].done() else
            {"board": b.name, "answered": False, "error": f"no answer within {bound:.0f} s"} for b in boards]
    _remember(rows, seen_file)
    return rows


def _ago(then: float | None) -> str:
    if then is None:
        return "never"
    seconds = time.time() - then
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "now" if seconds < 5 else f"{seconds:.0f} s ago"


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The fleet as text: one line per board."""
    lines = [f"{'board':<16} {'release':<28} {'commit':<6} {'service':<20} {'scores':<14} {'free':>8}  "
             f"{'recorded':>9}  {'trust':<22} seen"]
    for row in rows:
        if not row["answered"]:
            lines.append(f"{row['board']:<16} {'NO ANSWER':<28} {'':<6} {'':<20} {'':<14} {'':>8}  {'':>9}  {'':<22} "
                         f"{_ago(row.get('last_seen'))}: {row['error'][:80]}")
            continue
        svc = row.get("service")
        service = "-" if not svc else (f"{svc['active']} {svc['achieved_hz'] or 0:.1f}/{svc['target_hz'] or 0:g} Hz"
                                       if svc.get("achieved_hz") is not None else str(svc["active"]))
        committed = {None: "-", True: "yes", False: "NO"}[row.get("committed")]
        scores = " ".join(f"{s:+.0f}" for s in (row.get("scores") or [])[-4:]) or "-"
        free = f"{(row.get('free_bytes') or 0) / 2**30:.1f}G"
        data = row.get("data") or {}
        recorded = f"{data.get('bytes', 0) / 1e6:.1f}M/{data.get('shards', 0)}" if data.get("shards") else "-"
        damaged = f"; DAMAGED: {', '.join(row['damaged'])[:80]}" if row.get("damaged") else ""
        lines.append(f"{row['board']:<16} {row.get('current') or '(none)':<28} {committed:<6} {service:<20} "
                     f"{scores:<14} {free:>8}  {recorded:>9}  {row.get('trust', ''):<22.22} "
                     f"{_ago(row.get('last_seen'))}{damaged}")
    return lines
