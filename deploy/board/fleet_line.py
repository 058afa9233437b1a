"""One board's line of the fleet table, in one call: `fleet-status` (stdlib only, shipped with side.py).

    python3 .board/<digest>/fleet_line.py fleet-status ROOT   ->  one JSON line

Everything `edgerl status --inventory` shows for a board, read without
waiting on anything: releases and whether current is committed, free disk,
the service as systemd and the loop's status file see it, the last scores
(the serving game's, else the last `edgerl run` report), the trust policy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

# Side by side on the board, top-level modules there; here the deploy.board package (a bare name could be anyone's).
if __package__:
    from deploy.board import data, service, side
    from deploy.board import trust as board_trust
    from deploy.board.durable import read_json
    from deploy.board.runner import run_op, space
    from deploy.board.units import unit_state
else:
    import data
    import service
    import side
    import trust as board_trust
    from durable import read_json
    from runner import run_op, space
    from units import unit_state

from device.layout import COMMITTED, CURRENT, PREVIOUS, REPORTS, SERVE_STATUS, UNIT


def _last_report_scores(root: str) -> list[float]:
    folder = os.path.join(root, REPORTS)
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json")) if os.path.isdir(folder) else []
    for name in reversed(names):
        report = read_json(os.path.join(folder, name))
        if report and isinstance(report.get("episodes"), list):
            return [e.get("score") for e in report["episodes"] if isinstance(e, dict)]
    return []


def _service(root: str) -> dict[str, Any] | None:
    installed = os.path.isfile(os.path.join(service.unit_folder(), UNIT))
    if not installed or not os.path.isdir("/run/systemd/system"):
        return None
    unit = unit_state()
    status = read_json(os.path.join(root, SERVE_STATUS)) or {}
    return {"active": unit.get("ActiveState"), "sub": unit.get("SubState"), "restarts": unit.get("NRestarts"),
            "release": status.get("release"), "achieved_hz": status.get("achieved_hz"),
            "target_hz": status.get("target_hz"), "overruns": status.get("overruns"),
            "scores": status.get("scores") or []}


def op_fleet_status(root: str) -> dict[str, Any]:
    """The board's releases, disk, service, last scores and trust policy."""
    current = side.link_name(root, CURRENT)
    serving = _service(root)
    committed = side.link_name(root, COMMITTED)
    return {
        "current": current, "previous": side.link_name(root, PREVIOUS),
        "committed": None if committed is None else committed == current,
        "locked": side.is_locked(root) if os.path.isdir(root) else False,
        "damaged": side.damaged(root),
        **(space(root) if os.path.isdir(root) else {}),
        "service": serving,
        "scores": (serving or {}).get("scores") or _last_report_scores(root),
        "trust": board_trust.op_trust_list(root)["summary"],
        "data": {k: v for k, v in data.op_data_list(root).items() if k != "recordings"},
        "machine": side.op_probe(root)["machine"] if os.path.isdir(root) else None,
    }


OPS: dict[str, Callable[..., dict[str, Any] | None]] = {"fleet-status": op_fleet_status}


if __name__ == "__main__":
    sys.exit(run_op(OPS, sys.argv[1:]))
