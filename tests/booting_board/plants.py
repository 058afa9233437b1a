"""Plants for the booting board's service tests: ones a health gate must refuse, and one it must not."""

from __future__ import annotations

import os
import signal
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
    """A driver whose every write takes longer than the loop's period (a bus far too slow for the rate): 0.3 s
    overruns any rate the tests use (board_world.RATE_FLOOR_HZ and up)."""

    def apply(self, action: np.ndarray) -> None:
        time.sleep(0.3)


SLOW_START_CALLS = 3
SLOW_START_S = 0.25
"""Each slow write overruns its period and carries the loop past one or two more deadlines (skipped): at 10 Hz ~9
missed periods of the gate's 100, at 5 Hz ~6 of 50 (the allowance is 20 %), though most of the first ten."""


class SlowStart(_Counted):
    """A driver whose first writes are slow (a bus still waking up), then keeps time: late only while it starts."""

    def apply(self, action: np.ndarray) -> None:
        super().apply(action)
        if self.calls <= SLOW_START_CALLS:
            time.sleep(SLOW_START_S)


STALLS = 4
STALL_S = 0.8
"""Four freezes of 0.8 s: a third of the gate's 10 s pass without a decision (~32 periods of 100 at 10 Hz), whatever
the rate."""


class Stalls(_Counted):
    """A driver that keeps time on a board where another process freezes the loop (SIGSTOP) four times for 0.8 s.

    The freezes fall outside the loop's phases (it sleeps most of each period), so almost no decision overruns:
    whole periods pass with no decision at all, as when the issue's board stalled for 928 ms.
    """

    def __init__(self) -> None:
        super().__init__()
        loop, (wake_r, self._wake_w) = os.getpid(), os.pipe()
        if os.fork() == 0:  # the freezer: it waits for the loop's 20th decision, then stalls it
            os.read(wake_r, 1)
            for _ in range(STALLS):
                os.kill(loop, signal.SIGSTOP)
                time.sleep(STALL_S)  # the stall itself
                os.kill(loop, signal.SIGCONT)
                time.sleep(1.0)
            os._exit(0)

    def apply(self, action: np.ndarray) -> None:
        super().apply(action)
        if self.calls == 20:
            os.write(self._wake_w, b"x")
