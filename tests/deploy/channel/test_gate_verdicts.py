"""What a pulled service release's board gate said decides the next poll: report it, give it up, or take it again."""

from __future__ import annotations

import json

import pytest

from deploy.agent import gate
from device import layout


@pytest.mark.parametrize(("verdict", "outcome", "gave_up"), [
    ("committed", "committed", False),
    ("rolled_back", "rolled-back", True),
    ("failed", "rolled-back", True),
    # The gate found the switch never happened: the power (or the poll) stopped between its record and the
    # switch. That says nothing of the release, so it is not given up: the next poll takes it again.
    ("not_switched", None, False),
])
def test_the_gates_verdict_on_the_offered_release(tmp_path, verdict, outcome, gave_up):
    (tmp_path / layout.GATE_RESULT).write_text(json.dumps({"release": "r2", "verdict": verdict, "reason": "why"}))
    said = gate.verdict(str(tmp_path), "r2")
    assert (said.outcome if said else None) == outcome
    assert bool(said and said.gave_up) == gave_up
    assert gate.verdict(str(tmp_path), "r3") is None  # a verdict on another release says nothing of this one


def test_a_gate_still_judging_the_offered_release_is_reported_as_judging(tmp_path):
    (tmp_path / layout.GATE).write_text(json.dumps({"release": "r2", "back_to": "r1"}))
    assert gate.verdict(str(tmp_path), "r2").outcome == "judging"
