"""The health gate's judgement of a live loop: running, deciding, on time (stdlib only, shipped with service.py).

A new release is healthy while systemd keeps its loop active without restarts, the loop keeps rewriting its
status file, and it misses no more of its periods than the gate allows.
"""

from __future__ import annotations

import os
import time
from typing import Any

# Side by side on the board, top-level modules there; here the deploy.board package (a bare name could be anyone's).
if __package__:
    from deploy.board.durable import read_json
    from deploy.board.units import START_ALLOWANCE_S, unit_state
else:
    from durable import read_json
    from units import START_ALLOWANCE_S, unit_state

from device.layout import SERVE_STATUS

STALE_S = 5.0
"""A status file unchanged for this long, while the unit is active, means the loop has stopped deciding."""
MIN_DECISIONS = 20
"""Overruns are judged once the loop has made this many decisions (a share of fewer says little)."""

class Pulse:
    """Whether the loop still rewrites its status file, timed by this process's monotonic clock.

    Not its `updated_at` against the board's wall clock: a Pi without a real-time clock boots at fake-hwclock's
    last save and NTP steps the clock when the network comes up, often mid-gate, which would make a live loop
    look stale for a poll and roll a healthy release back. The status seen at the first poll is not fresh yet:
    after a power cut it is the dead loop's last.
    """

    def __init__(self) -> None:
        self.polled = False
        self.last: tuple[Any, ...] | None = None
        self.changed_at: float | None = None

    def fresh(self, status: dict[str, Any] | None) -> bool:
        """Whether the status changed within STALE_S (called once per poll)."""
        key = None if status is None else (status.get("pid"), status.get("updated_at"), status.get("decisions"))
        now = time.monotonic()
        if self.polled and key is not None and key != self.last:
            self.changed_at = now
        self.polled, self.last = True, key
        return self.changed_at is not None and now - self.changed_at < STALE_S


def _health(gate: dict[str, Any], unit: dict[str, str], status: dict[str, Any] | None, fresh: bool
            ) -> tuple[bool, str | None]:
    """(running healthy now, why it failed or None); `fresh`: the status file is still being rewritten."""
    mine = status is not None and status.get("release") == gate["release"]
    if mine and status.get("state") == "failed":
        return False, f"the loop stopped: {status.get('error')}"
    if unit.get("LoadState") not in (None, "loaded"):
        return False, f"systemd cannot load the unit ({unit.get('LoadState')})"
    if unit.get("ActiveState") == "failed" or unit.get("SubState") == "auto-restart":
        return False, f"the loop exited ({unit.get('Result')}) and systemd is restarting it"
    running = unit.get("ActiveState") == "active" and mine and fresh and status.get("state") == "running"
    late = overrun_failure(gate, status, final=False) if running else None
    return (False, late) if late else (running, None)


def overrun_failure(gate: dict[str, Any], status: dict[str, Any], final: bool) -> str | None:
    """Why the loop's missed periods fail the gate, or None.

    A period is missed when its decision overran it or when no decision was made in it at all (skipped: the
    loop stalled outside its phases, or an overrun carried it past the next deadline); both count against the
    allowance. The allowance is a share of the periods of the whole gate, so a burst in its first seconds (a
    cold cache, a first inference) fails it early only once no clean run for the rest of the gate could bring
    the share back.
    """
    decisions, overruns = int(status.get("decisions") or 0), int(status.get("overruns") or 0)
    skipped = int(status.get("skipped_periods") or 0)
    periods, missed = decisions + skipped, overruns + skipped
    window = periods if final else max(periods, float(status.get("target_hz") or 0) * gate["seconds"])
    if decisions < MIN_DECISIONS or missed <= gate["max_overrun"] * window:
        return None
    return (f"it missed its deadline on {missed / periods:.0%} of periods ({overruns} overran and {skipped} were "
            f"skipped, of {periods}; the gate allows {gate['max_overrun']:.0%}; worst overrun "
            f"{status.get('worst_overrun_ms', 0):.1f} ms)")


def watch(root: str, gate: dict[str, Any], poll: float = 1.0) -> tuple[str | None, dict[str, Any] | None]:
    """Watch the loop until it has run healthy for the gate's seconds: (why it failed or None, its figures)."""
    started, healthy_since = time.monotonic(), None
    restarts, invocation, status, pulse = None, None, None, Pulse()
    while True:
        time.sleep(poll)
        unit, status = unit_state(), read_json(os.path.join(root, SERVE_STATUS))
        restarts = int(unit.get("NRestarts") or 0) if restarts is None else restarts
        running, failure = _health(gate, unit, status, pulse.fresh(status))
        if failure is None and int(unit.get("NRestarts") or 0) > restarts:
            failure = "systemd restarted the loop (it crashed, or its watchdog pings stopped)"
        if failure is None and running:
            invocation = invocation or unit.get("InvocationID")
            if unit.get("InvocationID") != invocation:
                failure = "systemd restarted the loop"
        if failure is None and not running and healthy_since is not None:
            failure = f"the loop stopped deciding (unit {unit.get('ActiveState')}/{unit.get('SubState')})"
        if failure:
            return failure, status
        now = time.monotonic()
        if running:
            healthy_since = healthy_since or now
            if now - healthy_since >= gate["seconds"]:
                return overrun_failure(gate, status, final=True), status
        elif now - started > START_ALLOWANCE_S:
            return f"the loop made no decision within {START_ALLOWANCE_S:.0f} s", status
