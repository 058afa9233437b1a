"""A pulled release that runs as the board's service: the same units and health gate as `deploy --service`.

The board's own gate (deploy/board/service.py: edgerl-gate.service) judges the release after the switch and
commits it or rolls it back by itself; the agent only records the gate before the switch, starts it after, and
at later polls reads its verdict for the report.
"""

from __future__ import annotations

import os
from typing import Any

if __package__:
    from deploy.agent.state import Outcome
    from deploy.board import service
    from deploy.board.durable import read_json
    from deploy.board.runner import Refused
else:
    import service
    from durable import read_json
    from runner import Refused
    from state import Outcome

from device import layout

FAILED = ("rolled_back", "failed")
"""Gate verdicts after which the release is not the board's: given up until another is published. Not
"not_switched": the power (or the poll) stopped between the gate's record and the switch, which says nothing of the
release, so the next poll takes it again."""


def wants_service(sums: dict[str, str]) -> bool:
    """Whether the release carries service settings (it was published with --service)."""
    return layout.SERVICE_FILE in sums


def prepare(root: str) -> None:
    """The service's units in place (a board without systemd refuses), and no other gate still judging."""
    try:
        service.op_service_install(root)
    except Refused as err:
        raise Refused(str(err).split(";")[0], gave_up=True) from None
    pending = service.op_gate_resume(root)["gate"]
    if pending is not None:
        raise Refused(f"the gate of {pending.get('release')} is still judging; the next poll tries", busy=True)


def begin(root: str, rid: str, rollout: dict[str, Any]) -> None:
    """The gate recorded, durably, before the switch it judges."""
    gate = rollout.get("gate") or {}
    service.op_gate_begin(root, rid, str(gate.get("seconds", "30")), str(gate.get("max_overrun", "0.05")))


def switched(root: str) -> None:
    """After the switch: the loop restarted on the new release and the board's gate started (neither waits)."""
    service.op_service_switch(root)


def verdict(root: str, rid: str) -> Outcome | None:
    """What the board's gate said of the offered release, if it judged it: committed, rolled back, or judging."""
    pending = read_json(os.path.join(root, layout.GATE))
    if pending is not None and pending.get("release") == rid:
        return Outcome("judging", f"the board's gate is judging {rid}", current=rid)
    result = read_json(os.path.join(root, layout.GATE_RESULT))
    if not result or result.get("release") != rid:
        return None
    current = service.side.link_name(root, layout.CURRENT)
    figures = {"gate": {k: result.get(k) for k in ("verdict", "reason", "figures", "attempts")}}
    if result.get("verdict") == "committed":
        return Outcome("committed", f"the board's gate committed {rid}: {result.get('reason')}", current=current,
                       **figures)
    if result.get("verdict") in FAILED:
        return Outcome("rolled-back", f"the board's gate did not keep {rid}: {result.get('reason')}; runs {current}",
                       current=current, failed=True, gave_up=True, **figures)
    return None
