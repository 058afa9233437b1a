"""The plant of examples/cart_service.py: a cart on a spring, simulated in numpy, as `serve --io` drives it.

An I/O class is built with no arguments; `observe()` returns the policy's
observation, `apply(action)` drives the actuators, `close()` puts the machine
in a safe state (called on every way out of the loop), `status()`, if
present, adds its figures to the loop's status file, and `outcome()`, if
present, gives a recording (`serve --record DIR`) the last apply's reward and
whether it ended the episode.
"""

from __future__ import annotations

import sys

import numpy as np

DT = 1 / 50
STIFFNESS = 1.0
MAX_FORCE = 2.0


class Cart:
    """Position and velocity of a 1 kg cart; pushed 1 m off its rest point at start."""

    def __init__(self) -> None:
        self.x, self.v = 1.0, 0.0
        self.steps = 0
        self.force = 0.0

    def observe(self) -> np.ndarray:
        """The sensors: position and velocity."""
        return np.array([self.x, self.v], dtype=np.float32)

    def apply(self, action: np.ndarray) -> None:
        """The motor: a force within its limits, for one period."""
        self.force = float(np.clip(action, -1.0, 1.0)[0]) * MAX_FORCE
        accel = -STIFFNESS * self.x + self.force
        self.v += accel * DT
        self.x += self.v * DT
        self.steps += 1

    def outcome(self) -> tuple[float, bool]:
        """The last period's reward (the cart's distance from rest, negated) and whether the episode ended (never)."""
        return -abs(self.x), False

    def status(self) -> dict[str, float]:
        """Figures for the status file."""
        return {"position_m": round(self.x, 5), "velocity_m_s": round(self.v, 5), "steps": self.steps}

    def close(self) -> None:
        """Motor off: the safe state."""
        self.force = 0.0
        print(f"cart: motor off at x={self.x:+.4f} m after {self.steps} steps", file=sys.stderr, flush=True)
