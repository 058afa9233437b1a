"""The example policies the suite exports as a user would (shared by host, device and deploy tests)."""

from pathlib import Path

import campaign
import in_process

REPO = Path(__file__).resolve().parents[1]
OWN_POLICIES = ("breakout_stacked", "invaders_actor")
"""Policies edgerl has never seen (examples/): other games, other networks, frame stacks, one-hot actions."""
SECOND_ROUND = ("boxing_gru", "pendulum_tanh", "two_sensors", "freeway_gru")
"""A GRU pixel policy on Boxing, VecNorm + TanhNormal on Pendulum, a camera + joints robot policy, and a user's
lazy-layered GRU on Freeway (once refused by verify: a named regression)."""
VERIFY_STEPS = 1000 if campaign.FULL else 300
"""Steps of each example policy's verification at export: the CLI's default under `make campaigns`; in the tiers
300, which crosses two episode starts (one every 250 steps), and the tests that step TorchRL beside the board go on
for 1000 of their own."""


def export_flags(name: str) -> tuple[str, ...]:
    """How the suite exports example policy `name`. AOTInductor (~15 s a compile) is compiled and checked in the
    tiers by test_export.py's one CLI export of a recurrent policy; `make campaigns` compiles it for every one."""
    aoti = ("--aoti",) if "aoti" in backends_of(name) else ()
    return (*aoti, "--verify-steps", str(VERIFY_STEPS))


def backends_of(name: str) -> set[str]:
    """The backends the suite exports and verifies for example policy `name`."""
    return {"onnx", "pt2", "aoti"} if campaign.FULL else {"onnx", "pt2"}


def export_from(factory: str, out: Path, *extra: str) -> in_process.Ran:
    return in_process.edgerl("export", "--from", factory, "--out", out, *extra, cwd=REPO)
