"""A fixed-rate clock and the loop's timing figures.

Deadlines are absolute (`t0 + k * period`), so sleeping late on one period
does not push every later one back, the drift a `sleep(period)` loop has.
After an overrun the missed periods are skipped, never run back to back to
catch up: a controller acting twice in a burst on stale observations is worse
than one that skips a beat.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WINDOW = 4096
"""Samples kept for the percentiles (a few minutes at 15-50 Hz); counts are kept for the whole run."""


SPIN_S = 0.002
"""The last stretch before a deadline is waited out awake: on a shared VM a sleeping thread is woken 2+ ms late
on 7 % of periods, one that waits the last ms awake on 1 % (docs/results.md); it costs this much CPU per period."""


class Ticker:
    """Sleeps until the next absolute deadline; counts the periods it skipped and the late wake-ups.

    A wake-up the kernel delivers a whole period late is a stall of the machine, not of the loop: the status
    file names it (`late_wakes`) beside the loop's own overruns.
    """

    def __init__(self, hz: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, spin_s: float = SPIN_S) -> None:
        self.period = 1.0 / hz
        self._clock = clock
        self._sleep = sleep
        self._spin = spin_s
        self.t0 = clock()
        self.k = 0
        self.skipped = 0
        self.late_wakes = 0
        self.worst_wake_late_s = 0.0
        self.late_entries = 0
        """Periods whose whole iteration (phases, bookkeeping, and any time the process was runnable but not run)
        ended past the next deadline: beside `overruns` (the phases alone) it tells a stall of the loop's own
        work from a stall around it."""

    def wait(self) -> float:
        """Sleep until the next deadline still in the future; return that deadline."""
        self.k += 1
        now = self._clock()
        deadline = self.t0 + self.k * self.period
        if now > deadline:  # overrun: skip to the first period that has not started yet
            self.late_entries += 1
            late = int((now - self.t0) / self.period) + 1
            self.skipped += late - self.k
            self.k = late
            deadline = self.t0 + self.k * self.period
        while True:
            left = deadline - self._clock()
            if left <= 0:
                self.worst_wake_late_s = max(self.worst_wake_late_s, -left)
                self.late_wakes += -left > self.period
                return deadline
            if left > self._spin:
                self._sleep(left - self._spin)


def steal_ms() -> float:
    """CPU time the hypervisor took from this machine so far (/proc/stat's steal, all CPUs), in ms.

    The floor a timing figure is read beside on a VM (0 on a board).
    """
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return 0.0
    return int(fields[8]) * 1000.0 / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def _ms(samples: deque[float]) -> dict[str, float]:
    if not samples:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    arr = np.fromiter(samples, dtype=np.float64, count=len(samples)) * 1000.0
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p99": round(float(np.percentile(arr, 99)), 3),
            "max": round(float(arr.max()), 3)}


@dataclass
class LoopTiming:
    """Period, phases and overruns of a fixed-rate loop, in the spirit of LeRobot's cycle timer."""

    target_hz: float
    periods: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    phases: dict[str, deque] = field(default_factory=lambda: {p: deque(maxlen=WINDOW)
                                                              for p in ("observe", "infer", "apply")})
    busy: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    decisions: int = 0
    overruns: int = 0
    worst_overrun_s: float = 0.0
    first: float | None = None
    last: float | None = None

    def record(self, started: float, observe_s: float, infer_s: float, apply_s: float) -> None:
        """One decision that started at `started` (monotonic seconds)."""
        period = 1.0 / self.target_hz
        if self.last is not None:
            self.periods.append(started - self.last)
        if self.first is None:
            self.first = started
        self.last = started
        self.decisions += 1
        for name, value in (("observe", observe_s), ("infer", infer_s), ("apply", apply_s)):
            self.phases[name].append(value)
        busy = observe_s + infer_s + apply_s
        self.busy.append(busy)
        if busy > period:
            self.overruns += 1
            self.worst_overrun_s = max(self.worst_overrun_s, busy - period)

    def figures(self) -> dict[str, Any]:
        """The status file's timing keys."""
        period = 1.0 / self.target_hz
        span = (self.last - self.first) if self.first is not None and self.last is not None else 0.0
        achieved = (self.decisions - 1) / span if span > 0 else 0.0
        errors = deque(abs(p - period) for p in self.periods)
        busy = np.fromiter(self.busy, dtype=np.float64, count=len(self.busy)) if self.busy else np.zeros(1)
        return {
            "target_hz": round(self.target_hz, 4),
            "achieved_hz": round(achieved, 4),
            "decisions": self.decisions,
            "overruns": self.overruns,
            "overrun_share": round(self.overruns / self.decisions, 4) if self.decisions else 0.0,
            "worst_overrun_ms": round(self.worst_overrun_s * 1000.0, 3),
            "period_ms": _ms(self.periods),
            "period_error_ms": _ms(errors),
            "phase_ms": {name: _ms(samples) for name, samples in self.phases.items()},
            "headroom": round(1.0 - float(np.percentile(busy, 99)) / period, 4),
        }
