"""The example policies the suite exports as a user would (shared by host, device and deploy tests)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OWN_POLICIES = ("breakout_stacked", "invaders_actor")
"""Policies edgerl has never seen (examples/): other games, other networks, frame stacks, one-hot actions."""
SECOND_ROUND = ("boxing_gru", "pendulum_tanh", "two_sensors")
"""A GRU pixel policy on Boxing, VecNorm + TanhNormal on Pendulum, a camera + joints robot policy."""


def export_from(factory: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "host.cli", "export", "--from", factory, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
