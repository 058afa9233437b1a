"""Plants for the booting board's service tests: ones a health gate must refuse, and one it must not."""

from __future__ import annotations

import sys
import time

import numpy as np


class _Counted:
    """A plant that reads nothing and counts its writes."""

    def __init__(self) -> None:
        self.calls = 0

    def observe(self) -> np.ndarray:
        return np.zeros(2, dtype=np.float32)

    def apply(self, action: np.ndarray) -> None:
        self.calls += 1


class CrashSoon(_Counted):
    """A driver that works for ten decisions, then raises (a bug in the user's code)."""

    def apply(self, action: np.ndarray) -> None:
        super().apply(action)
        if self.calls > 10:
            raise RuntimeError("motor driver lost")

    def close(self) -> None:
        print("crash-soon: motor off", file=sys.stderr, flush=True)


class AlwaysLate(_Counted):
    """A driver whose every write takes longer than the loop's period (a bus far too slow for the rate)."""

    def apply(self, action: np.ndarray) -> None:
        time.sleep(0.15)


SLOW_START_CALLS = 5
"""Each slow write overruns its period and carries the loop past the next deadline (skipped): ~10 missed periods of
the gate's 100, half of the allowance, though half of the first ten."""


class SlowStart(_Counted):
    """A driver whose first writes are slow (a bus still waking up), then keeps time: late only while it starts."""

    def apply(self, action: np.ndarray) -> None:
        super().apply(action)
        if self.calls <= SLOW_START_CALLS:
            time.sleep(0.15)
