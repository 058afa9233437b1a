"""The board's service ops without systemd: what a board that cannot run a service says, and the gate's bookkeeping.

The gate's judging of a live loop is proven on the booting board (tests/booting_board/);
here are the decisions that need no running unit: a gate whose switch never
happened, one committed just before a power loss, one whose rollback a power
loss cut at any step, one with nothing to go back to, how missed deadlines are
counted against the allowance, and the unit files' quoting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from deploy import board_client
from deploy.board import health as board_health
from deploy.board import service as board_service
from device.layout import COMMITTED, GATE, GATE_RESULT, GATE_UNIT, UNIT

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_board_side import FILES, link, make_release  # noqa: E402


def service_op(*argv: str) -> dict:
    done = subprocess.run([sys.executable, str(board_client.SHIPPED["service.py"]), *argv], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def gate_file(root: Path, release: str, back_to: str | None) -> None:
    (root / GATE).write_text(json.dumps({"release": release, "back_to": back_to, "seconds": 1.0,
                                         "max_overrun": 0.05, "attempts": 0}))


def test_a_board_without_systemd_says_so_in_one_line(tmp_path):
    reply = service_op("service-install", str(tmp_path))
    assert reply["ok"] is False and reply["no_service"] is True
    assert reply["error"].startswith("this board does not run systemd") and "\n" not in reply["error"]
    logs = service_op("service-logs", str(tmp_path), "20")  # not journalctl's "-- No entries --"
    assert logs["ok"] is False and "keeps no journal" in logs["error"]


def test_a_gate_whose_switch_never_happened_leaves_the_old_release_running(tmp_path):
    old = make_release(tmp_path, FILES)
    link(tmp_path, "current", old)
    gate_file(tmp_path, "policy-never-switched", old)
    result = service_op("gate", str(tmp_path))
    assert result["verdict"] == "not_switched" and not (tmp_path / GATE).exists()
    assert json.loads((tmp_path / GATE_RESULT).read_text())["verdict"] == "not_switched"
    assert (tmp_path / "current").resolve().name == old


def test_a_gate_committed_just_before_a_power_loss_is_finished_not_judged_again(tmp_path):
    new = make_release(tmp_path, FILES)
    link(tmp_path, "current", new)
    link(tmp_path, COMMITTED, new)
    gate_file(tmp_path, new, "policy-older")
    assert service_op("gate", str(tmp_path))["verdict"] == "committed"
    assert not (tmp_path / GATE).exists()


def test_a_gate_that_outlived_its_boots_rolls_back_to_an_intact_release_only(tmp_path, monkeypatch):
    old = make_release(tmp_path, FILES)
    new = make_release(tmp_path, {**FILES, "bundle/policy.onnx": b"new model"})
    link(tmp_path, "current", new)
    gate = {"release": new, "back_to": old, "seconds": 1.0, "max_overrun": 0.05,
            "attempts": board_service.MAX_ATTEMPTS}
    (tmp_path / GATE).write_text(json.dumps(gate))
    restarted = []
    monkeypatch.setattr(board_service, "systemctl", lambda *a, **k: restarted.append(a))
    result = board_service.op_gate(str(tmp_path))
    assert result["verdict"] == "rolled_back" and "3 boots" in result["reason"]
    assert (tmp_path / "current").resolve().name == old and (tmp_path / "previous").resolve().name == new
    assert ("restart", "--no-block", UNIT) in restarted
    # With nothing intact to go back to, the board says so and leaves current alone.
    (tmp_path / "releases" / old / "bundle" / "policy.onnx").write_bytes(b"tampered")
    link(tmp_path, "current", new)
    (tmp_path / GATE).write_text(json.dumps(gate))
    result = board_service.op_gate(str(tmp_path))
    assert result["verdict"] == "failed" and "is broken" in result["reason"]
    assert (tmp_path / "current").resolve().name == new


class PowerCut(BaseException):
    """The board lost power: nothing after this step ran."""


class Power:
    """The board's power, cut just before its durable step number `cut_before` (counted from 0)."""

    def __init__(self, cut_before: int) -> None:
        self.cut_before, self.steps = cut_before, []

    def through(self, real):  # noqa: ANN001, ANN201
        def step(*args):  # noqa: ANN002, ANN202
            if len(self.steps) == self.cut_before:
                raise PowerCut
            self.steps.append(real.__name__)
            return real(*args)
        return step


def test_a_power_cut_at_any_step_of_a_rollback_is_finished_at_boot_and_reported_as_a_rollback(tmp_path, monkeypatch):
    monkeypatch.setattr(board_service, "systemctl", lambda *a, **k: None)
    reason = "it missed its deadline on 30% of periods"
    cut_points = 0
    while True:  # cut before the 1st durable step, the 2nd, ..., until a rollback runs through uncut
        root = tmp_path / f"cut-{cut_points}"
        old = make_release(root, FILES)
        new = make_release(root, {**FILES, "bundle/policy.onnx": b"new model"})
        link(root, "current", new)
        link(root, COMMITTED, old)
        gate = {"release": new, "back_to": old, "seconds": 1.0, "max_overrun": 0.05,
                "attempts": board_service.MAX_ATTEMPTS}
        (root / GATE).write_text(json.dumps(gate))
        power = Power(cut_points)
        with monkeypatch.context() as m:
            for name in ("write_durably", "relink", "remove_durably"):
                m.setattr(board_service, name, power.through(getattr(board_service, name)))
            try:
                board_service._rollback(str(root), gate, reason, {"decisions": 90})
                cut = False
            except PowerCut:
                cut = True
        done = power.steps
        if (root / GATE).exists():  # the next boot's gate unit runs on what the cut left
            board_service.op_gate(str(root))
        after = json.loads((root / GATE_RESULT).read_text())
        assert (root / "current").resolve().name == old and (root / "previous").resolve().name == new, done
        assert after["verdict"] == "rolled_back" and not (root / GATE).exists(), (done, after)
        if cut_points == 0:  # nothing was written yet: the boot's gate judges the release itself, as a new attempt
            assert "in 3 boots" in after["reason"], after
        elif cut:  # the rollback had begun: it is finished, and said to be the one it was, with its figures
            assert after["reason"] == f"{reason} (rolled back across a power loss)", (done, after)
            assert after["figures"] == {"decisions": 90}
        if not cut:
            break
        cut_points += 1
    assert cut_points == 5, done  # the flag, two links, the result, the gate file: each a point a cut may fall


def test_a_second_gate_is_refused_while_one_is_pending(tmp_path):
    rid = make_release(tmp_path, FILES)
    link(tmp_path, "current", rid)
    assert service_op("gate-begin", str(tmp_path), rid, "30", "0.05")["gate"]["back_to"] == rid
    refused = service_op("gate-begin", str(tmp_path), "policy-other", "30", "0.05")
    assert refused["ok"] is False and "still running" in refused["error"]


def test_unit_files_quote_every_path_for_systemd(tmp_path):
    root = str(tmp_path / "my boards/100%$HOME")
    units = board_service.unit_texts(root, "/code")
    serve = next(line for line in units[UNIT].splitlines() if line.startswith("ExecStart="))
    assert '"-m" "device" "serve"' in serve
    assert f'"{tmp_path}/my boards/100%%$$HOME/current"' in serve  # % and $ are systemd's own; doubled, literal
    assert "Type=notify" in units[UNIT] and "WatchdogSec=" in units[UNIT] and "Restart=on-failure" in units[UNIT]
    # Paths outside a command line are not quoted there, only their specifiers escaped.
    assert f"WorkingDirectory={tmp_path}/my boards/100%%$HOME\n" in units[UNIT]
    assert f"ConditionPathExists={tmp_path}/my boards/100%%$HOME/gate.json\n" in units[GATE_UNIT]


def test_missed_deadlines_are_a_share_of_the_gates_whole_window_not_of_its_first_seconds():
    gate = {"seconds": 10.0, "max_overrun": 0.05}  # 10 Hz x 10 s: 100 periods, 5 may be late

    def late(overruns: int, decisions: int, final: bool = False, skipped: int = 0) -> str | None:
        status = {"decisions": decisions, "overruns": overruns, "target_hz": 10.0, "worst_overrun_ms": 94.3,
                  "skipped_periods": skipped}
        return board_health.overrun_failure(gate, status, final)

    # A slow start (CI's emulated board: 2 late of its first 38) is not yet a failure: 98 more may run on time.
    assert late(2, 38) is None and late(5, 20) is None
    # Once more are late than the whole window allows, no clean run can mend it: it fails now.
    assert late(6, 30) == ("it missed its deadline on 20% of periods (6 overran and 0 were skipped, of 30; the gate "
                           "allows 5%; worst overrun 94.3 ms)")
    # At the window's end the share of every decision is judged: the loop ran slower than asked, so 5 is too many.
    assert late(5, 80, final=True) is not None and late(4, 80, final=True) is None
    # Past the window (a gate restarted by a reboot counts from its loop's start) the share is of all decisions.
    assert late(7, 200) is None and late(11, 200) is not None
    # Periods with no decision at all are missed too: the board skipped 16 against 180 decisions with no
    # overrun (a 928 ms stall outside the phases), and the gate committed it.
    assert late(0, 180, final=True, skipped=16) == ("it missed its deadline on 8% of periods (0 overran and 16 were "
                                                    "skipped, of 196; the gate allows 5%; worst overrun 94.3 ms)")
    assert late(0, 180, final=True, skipped=9) is None and late(3, 180, final=True, skipped=8) is not None
    # Fewer than MIN_DECISIONS say little: not judged.
    assert late(board_health.MIN_DECISIONS - 1, board_health.MIN_DECISIONS - 1) is None


def test_a_loop_is_fresh_while_it_rewrites_its_status_whatever_the_wall_clock_says(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(board_health.time, "monotonic", lambda: clock[0])
    pulse = board_health.Pulse()

    def poll(updated_at: float, decisions: int, pid: int = 7) -> bool:
        clock[0] += 1.0
        return pulse.fresh({"pid": pid, "updated_at": updated_at, "decisions": decisions})

    # The first status seen may be a dead loop's last (a power cut): not fresh until it changes.
    assert poll(50.0, 10) is False
    assert poll(51.0, 20) is True
    # NTP steps the clock an hour forward: the loop's next write is an hour later, and still fresh.
    assert poll(3651.0, 30) is True
    # A status that stops changing is stale STALE_S after its last change, whatever its updated_at.
    stale_after = [poll(3651.0, 30) for _ in range(int(board_health.STALE_S))]
    assert stale_after[:int(board_health.STALE_S) - 1] == [True] * (int(board_health.STALE_S) - 1)
    assert stale_after[-1] is False
    # A restarted loop (a new pid) is a change too.
    assert poll(3651.0, 30, pid=8) is True
