"""The example policies the suite exports as a user would (shared by host, device and deploy tests)."""

from pathlib import Path

import campaign
import in_process

REPO = Path(__file__).resolve().parents[1]
OWN_POLICIES = ("breakout_stacked", "invaders_actor")
"""Policies edgerl has never seen (examples/): other games, other networks, frame stacks, one-hot actions."""
SECOND_ROUND = ("boxing_gru", "pendulum_tanh", "two_sensors")
"""A GRU pixel policy on Boxing, VecNorm + TanhNormal on Pendulum, a camera + joints robot policy."""
AOTI_CHECKED = ("breakout_stacked", "tutorial_lstm")
"""The example policies whose AOTInductor package the tiers compile and check (a frame stack, a recurrent state);
the others skip its ~15 s compile there, ONNX and pt2 checked in full; `make campaigns` compiles every one."""


def export_flags(name: str) -> tuple[str, ...]:
    """How the suite exports example policy `name`: the CLI's defaults where a test checks them (1000 verify steps,
    every backend), else 300 steps, which test_second_round.py verifies again against the eager policy."""
    aoti = () if "aoti" in backends_of(name) else ("--no-aoti",)
    steps = () if name in (*OWN_POLICIES, "tutorial_lstm") or campaign.FULL else ("--verify-steps", "300")
    return (*aoti, *steps)


def backends_of(name: str) -> set[str]:
    """The backends the suite exports and verifies for example policy `name`."""
    return {"onnx", "pt2", "aoti"} if name in AOTI_CHECKED or campaign.FULL else {"onnx", "pt2"}


def export_from(factory: str, out: Path, *extra: str) -> in_process.Ran:
    return in_process.edgerl("export", "--from", factory, "--out", out, *extra, cwd=REPO)
