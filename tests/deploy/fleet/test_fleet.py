"""A lab of twelve boards in an Ansible inventory, updated in waves that stop on failure, and seen in one table."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest
from fleet_world import BOARDS, everyone_on, wait_for_line

from device.manifest import (
    EXIT_FAILED_CHECK,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_ROLLOUT_STOPPED,
    load_bundle,
    write_manifest,
)

# One worker builds the twelve boards once and runs every test of this file (they share them and FIGURES).
pytestmark = pytest.mark.xdist_group("fleet")

FIGURES = Path(__file__).resolve().parents[3] / "build" / "fleet-figures.json"


def record(name: str, value: object) -> None:
    """Figures docs/results.md quotes, written where `make test` leaves them."""
    FIGURES.parent.mkdir(exist_ok=True)
    figures = json.loads(FIGURES.read_text()) if FIGURES.is_file() else {}
    figures[name] = value
    FIGURES.write_text(json.dumps(figures, indent=1, sort_keys=True))


def release_of(table_line: str) -> str:
    return table_line.split()[1]


def rows(stdout: str) -> dict[str, str]:
    table = stdout.split("release / reason", 1)[1].strip().splitlines()
    return {line.split()[0]: line for line in table if re.match(r"pi\d\d ", line)}


def test_a_good_bundle_rolls_out_in_waves_of_1_then_25_percent_then_the_rest(fleet, bundles):
    old = everyone_on(fleet, bundles["dqn"])
    started = time.monotonic()
    done = fleet.cli("deploy", bundles["stacked"], "--waves", "1,25%,100%")
    took = time.monotonic() - started
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    waves = re.findall(r"wave (\d)/3: (\d+) ok, (\d+) failed in ([\d.]+) s", done.stdout)
    assert [(w, int(ok), int(bad)) for w, ok, bad, _ in waves] == [("1", 1, 0), ("2", 3, 0), ("3", 8, 0)]
    new = set(fleet.currents().values())
    assert len(new) == 1 and old not in new
    table = rows(done.stdout)
    assert len(table) == BOARDS and all(" ok " in line and f"{old} -> " in line for line in table.values())
    # The canary (first in the inventory's order) went alone, before any other board was touched.
    assert done.stdout.index("wave 1/3: 1 board (pi01)") < done.stdout.index("wave 2/3: 3 boards (pi02, pi03, pi04)")
    record("waves_12_boards", {"total_s": round(took, 1), "per_wave_s": [float(s) for *_, s in waves]})


def test_a_bundle_that_fails_on_the_canary_stops_the_rollout_before_any_other_board(fleet, bundles):
    old = everyone_on(fleet, bundles["dqn"])
    fleet.break_board("pi01")
    try:
        done = fleet.cli("deploy", bundles["stacked"], "--waves", "1,25%,100%")
    finally:
        fleet.mend_board("pi01")
    assert done.returncode == EXIT_ROLLOUT_STOPPED, done.stdout + done.stderr
    assert "stopped after wave 1: 1 board failed, more than --max-fail 0 allows (0)" in done.stdout
    assert set(fleet.currents().values()) == {old}
    table = rows(done.stdout)
    assert "FAILED" in table["pi01"] and "self-test failed" in table["pi01"]
    assert all("not touched" in table[n] for n in fleet.names[1:])
    assert "wave 2/3" not in done.stdout


def test_max_fail_1_lets_one_broken_board_through_and_stops_at_the_second(fleet, bundles):
    old = everyone_on(fleet, bundles["dqn"])
    fleet.break_board("pi01")
    fleet.break_board("pi03")
    try:
        done = fleet.cli("deploy", bundles["stacked"], "--waves", "1,25%,100%", "--max-fail", "1")
    finally:
        fleet.mend_board("pi01")
        fleet.mend_board("pi03")
    assert done.returncode == EXIT_ROLLOUT_STOPPED, done.stdout + done.stderr
    assert "wave 1/3: 0 ok, 1 failed" in done.stdout and "wave 2/3: 2 ok, 1 failed" in done.stdout
    assert "stopped after wave 2: 2 boards failed, more than --max-fail 1 allows (1)" in done.stdout
    table = rows(done.stdout)
    # The wave that stopped the rollout is put back where it was; the last wave is never touched.
    assert "rolled back" in table["pi02"] and "rolled back" in table["pi04"]
    assert set(fleet.currents().values()) == {old}
    assert all("not touched" in table[n] for n in fleet.names[4:])


def test_a_canary_that_scores_far_below_its_manifest_is_refused_and_put_back(fleet, bundles, tmp_path):
    import shutil

    old = everyone_on(fleet, bundles["dqn"])
    # An untrained policy whose manifest claims the shipped Pong policy's evaluation: it will lose every point.
    boasting = tmp_path / "boasting"
    shutil.copytree(bundles["stacked"], boasting)
    manifest = load_bundle(boasting)
    manifest.provenance["evaluation"] = load_bundle(Path("models/pong")).provenance["evaluation"]
    write_manifest(boasting, manifest)
    done = fleet.cli("deploy", boasting, "--waves", "1,100%", "--canary-games", "1", "--reports", tmp_path / "r")
    assert done.returncode == EXIT_ROLLOUT_STOPPED, done.stdout + done.stderr
    assert re.search(r"pi01: canary refused: its 1 games scored -\d+\.\d on average, more than 2 below the "
                     r"manifest's evaluated \+18\.2", done.stdout), done.stdout
    assert fleet.current("pi01") == old
    assert "the canary refused the release" in done.stdout
    assert all("not touched" in line for name, line in rows(done.stdout).items() if name != "pi01")
    # A student is judged by its teacher's evaluation: an untrained one (no evaluation of its own) against Pong's.
    done = fleet.cli("deploy", bundles["stacked"], "--waves", "1,100%", "--canary-games", "1", "--canary-against",
                     "models/pong", "--reports", tmp_path / "r")
    assert done.returncode == EXIT_ROLLOUT_STOPPED, done.stdout + done.stderr
    assert re.search(r"pi01: canary refused: its 1 games scored -\d+\.\d on average, more than 2 below "
                     r"models/pong's evaluated \+18\.2", done.stdout), done.stdout
    assert fleet.current("pi01") == old


def test_ctrl_c_between_waves_stops_with_a_true_message(fleet, bundles):
    old = everyone_on(fleet, bundles["dqn"])
    proc = fleet.popen("deploy", bundles["stacked"], "--waves", "1,100%", "--wave-pause", "60")
    wait_for_line(proc, "wave 1/2: 1 ok, 0 failed")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, out
    assert "interrupted before wave 2; its boards and later ones were not touched" in out
    currents = fleet.currents()
    assert currents["pi01"] != old and all(currents[n] == old for n in fleet.names[1:])
    table = rows(out)
    assert " ok " in table["pi01"] and all("not touched" in table[n] for n in fleet.names[1:])


def test_the_fleet_table_answers_for_twelve_boards_with_two_dead_in_bounded_time(fleet, bundles):
    release = everyone_on(fleet, bundles["dqn"])
    fleet.freeze("pi05")  # hung: the connection opens, nothing answers
    fleet.freeze("pi09")
    try:
        started = time.monotonic()
        done = fleet.cli("status", "--silence-timeout", "5", "--json")
        took = time.monotonic() - started
    finally:
        fleet.thaw("pi05")
        fleet.thaw("pi09")
    assert done.returncode == EXIT_FAILED_CHECK, done.stdout + done.stderr
    answers = {row["board"]: row for row in json.loads(done.stdout)}
    assert sorted(n for n, r in answers.items() if not r["answered"]) == ["pi05", "pi09"]
    alive = [r for n, r in answers.items() if r["answered"]]
    assert len(alive) == 10 and all(r["current"] == release and r["free_bytes"] > 0 for r in alive)
    assert all(r["trust"] == "no trust policy: unsigned releases accepted" for r in alive)
    assert all(r["last_seen"] is not None for r in alive)
    assert took < 5 + 2 * 5 + 5 + 10, f"the table took {took:.0f} s"
    record("status_12_boards_2_dead_s", round(took, 1))
    table = fleet.cli("status", "--silence-timeout", "5").stdout.splitlines()
    assert len(table) == 1 + BOARDS and all(release in line for line in table[1:])


def test_a_limit_pattern_picks_hosts_of_the_inventory(fleet, bundles):
    release = everyone_on(fleet, bundles["dqn"])
    done = fleet.cli("status", "--limit", "canary:pi1*", "--json")
    assert done.returncode == EXIT_OK, done.stderr
    assert [r["board"] for r in json.loads(done.stdout)] == ["pi01", "pi10", "pi11", "pi12"]
    assert all(r["current"] == release for r in json.loads(done.stdout))


def test_run_and_rollback_take_the_inventory_too(fleet, bundles, tmp_path):
    old = everyone_on(fleet, bundles["dqn"])
    new = everyone_on(fleet, bundles["stacked"])
    back = fleet.cli("rollback", "--limit", "pi02:pi03")
    assert back.returncode == EXIT_OK, back.stdout + back.stderr
    assert f"pi02: current is now {old}" in back.stdout and f"pi03: current is now {old}" in back.stdout
    assert fleet.current("pi02") == fleet.current("pi03") == old and fleet.current("pi04") == new
    played = fleet.cli("run", "--limit", "canary", "--max-steps", "20", "--reports", tmp_path / "reports")
    assert played.returncode == EXIT_OK, played.stdout + played.stderr
    assert re.search(r"^pi01: scores [+-]\d+ \(mean", played.stdout, re.M)
