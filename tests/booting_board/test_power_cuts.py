"""Power cuts at random points of `edgerl deploy --service`: after every boot the board runs a whole, verified release.

EDGERL_POWER_CUTS trials (CI runs a few; `make power-cuts` runs 20). Each
trial deploys a new release (the cart at a new rate), cuts the board's power
(SIGKILL of qemu) at a random moment of that deploy, boots it again, and
checks: `current` is a complete release that passed its self-test, the
service runs it, no deploy lock is held, and the next trial's deploy starts
from there. The last deploy is not cut and must commit.
"""

from __future__ import annotations

import json
import random
import re
import shlex
import subprocess
import sys
import time

import pytest
from board_world import BOARD_DIR, MAX_OVERRUN, REPO, SEED, TRIALS, judge_current, record

from deploy import board_client

pytestmark = pytest.mark.board

GATE_S = 10


def start_deploy(pi, cart_bundle, hz: float, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "host.cli", "deploy", str(cart_bundle), "--to", pi.target,
                             "--service", "--gate-seconds", str(GATE_S), "--max-overrun", str(MAX_OVERRUN),
                             "--wheelhouse", "--io", "examples/cart_io.py:Cart", "--hz", str(hz), *pi.flags()],
                            stdout=log, stderr=subprocess.STDOUT, text=True, cwd=REPO)


def test_power_cuts_during_deploy_service_always_leave_a_whole_release_running(pi, board, cart_bundle, tmp_path):
    rng = random.Random(SEED)
    for hz in (pi.rate(10), pi.rate(11)):  # uncut, to time a deploy --service; once more if this one installed the venv
        timed = tmp_path / f"uncut-{hz}.log"
        with open(timed, "w") as log:
            started = time.monotonic()
            assert start_deploy(pi, cart_bundle, hz, log).wait(timeout=1200) == 0, timed.read_text()
        span = time.monotonic() - started
        if "reusing venv" in timed.read_text():
            break
    record("deploy_service_s", round(span, 1))
    outcomes, cuts = {"old": 0, "new": 0}, []
    for trial in range(TRIALS):
        before = pi.current()
        cut_at = rng.uniform(0, span)
        out = tmp_path / f"trial{trial}.log"
        with open(out, "w") as log:
            proc = start_deploy(pi, cart_bundle, pi.rate(20 + trial), log)
            time.sleep(cut_at)
            board.power_cut()
            proc.kill()
            proc.wait()
        text = out.read_text()
        new = re.search(r"release (\S+)", text)
        board.boot()
        current, problems = judge_current(pi)
        assert current and problems == [], f"trial {trial}, cut at {cut_at:.1f} s: current {current}: {problems}"
        assert current in (before, new.group(1) if new else before), (trial, current, before, text)
        pi.wait_serving(current)
        assert json.loads(pi.edgerl("status", "--on", pi.target, timeout=300).stdout)["locked"] is False
        outcomes["new" if current != before else "old"] += 1
        cuts.append(round(cut_at, 1))
        print(f"trial {trial}: cut at {cut_at:.1f} s of {span:.0f} s -> {'new' if current != before else 'old'} "
              f"release {current}", flush=True)
    with open(tmp_path / "last.log", "w") as log:
        last = start_deploy(pi, cart_bundle, pi.rate(12), log)
        assert last.wait(timeout=1200) == 0, (tmp_path / "last.log").read_text()
    assert "committed" in (tmp_path / "last.log").read_text()
    record("power_cuts", {"trials": TRIALS, "seed": SEED, "ended_on_old": outcomes["old"],
                          "ended_on_new": outcomes["new"], "cut_at_s": cuts, "deploy_span_s": round(span, 1)})
    assert sum(outcomes.values()) == TRIALS


ROLLBACK_CUT = """
import os, sys
import service
from durable import relink
root, bad, good = sys.argv[1:]
relink(os.path.join(root, "current"), os.path.join("releases", bad))  # switched to a release its gate failed
first_link = service.relink

def power_goes_after(link, target):
    first_link(link, target)
    os._exit(0)

service.relink = power_goes_after
service._rollback(root, {"release": bad, "back_to": good, "seconds": 10.0, "max_overrun": 0.2, "attempts": 1},
                  "the loop stalled (this test's verdict)", None)
"""
"""The board's own rollback, run by the board's python3 from the shipped code, ended right after its first link moved
back: what a power cut at that instant leaves (every step before it was fsynced)."""


def test_a_cut_inside_the_boards_rollback_is_finished_at_boot_and_reported_as_a_rollback(pi, board):
    good = pi.current()
    bad = pi.sh(f"basename $(readlink {BOARD_DIR}/previous)").strip()
    assert bad and bad != good
    code = f"{BOARD_DIR}/.board/{board_client.CODE_DIGEST}"
    pi.sh(f"cd {code} && python3 -c {shlex.quote(ROLLBACK_CUT)} {BOARD_DIR} {bad} {good}")
    assert pi.current() == good and pi.sh(f"test -e {BOARD_DIR}/gate.json && echo pending").strip() == "pending"
    # A stray status file a cut left mid-write (or an older release's per-process name), beside the real one.
    pi.sh(f"echo '{{\"torn' > {BOARD_DIR}/.status.json.tmp; echo '{{}}' > {BOARD_DIR}/.status.json.4242; sync")
    board.power_cut()
    board.boot()
    status = pi.wait_serving(good)
    result = json.loads(pi.sh(f"cat {BOARD_DIR}/gate-result.json"))
    assert result["verdict"] == "rolled_back", result  # not "the switch never happened": the switch had happened
    assert result["reason"] == "the loop stalled (this test's verdict) (rolled back across a power loss)", result
    assert pi.sh(f"basename $(readlink {BOARD_DIR}/previous)").strip() == bad
    assert pi.sh(f"test -e {BOARD_DIR}/gate.json || echo done").strip() == "done"
    shown = pi.edgerl("service", "status", "--on", pi.target)
    assert f"last gate: rolled back to {good}: {bad} failed its gate: the loop stalled" in shown.stdout, shown.stdout
    # The loop started after the cut removed what it found beside its status file, and writes it whole.
    assert pi.sh(f"ls -A {BOARD_DIR} | grep '^.status.json.' || true").strip() == ""
    assert status["state"] == "running" and status["release"] == good


CHECK_SHARDS = """
import hashlib, json, os, sys
folder = sys.argv[1]
index = json.load(open(os.path.join(folder, "index.json")))
bad = [s["file"] for s in index["shards"]
       if hashlib.sha256(open(os.path.join(folder, s["file"]), "rb").read()).hexdigest() != s["sha256"]]
print(json.dumps({"shards": len(index["shards"]), "runs": len(index["runs"]), "bad": bad,
                  "decisions": sum(s["decisions"] for s in index["shards"])}))
"""
"""Every shard the board's recording index lists, checked against its sha256 by the board's own python3."""


def test_a_power_cut_while_the_service_records_leaves_every_listed_shard_whole_and_recording_resumes(
        pi, board, cart_bundle):
    done = pi.edgerl("deploy", cart_bundle, "--to", pi.target, "--service", "--gate-seconds", GATE_S, "--max-overrun",
                     MAX_OVERRUN, "--wheelhouse", "--io", "examples/cart_io.py:Cart", "--hz", pi.hz, "--record", "cart")
    assert done.returncode == 0 and "committed" in done.stdout, done.stdout + done.stderr
    folder = f"{BOARD_DIR}/data/cart"

    def shards() -> dict:
        return json.loads(pi.sh(f"python3 -c {shlex.quote(CHECK_SHARDS)} {folder}").strip().splitlines()[-1])

    deadline = time.monotonic() + 300
    while (before := shards())["shards"] < 2:  # a shard each 10 s at this rate (device.record.FLUSH_S)
        assert time.monotonic() < deadline, before
        time.sleep(2)
    time.sleep(random.Random(SEED).uniform(0, 10))  # the cut falls anywhere in the next shard's making
    board.power_cut()
    board.boot()
    pi.wait_serving()
    after = shards()
    assert after["bad"] == [] and after["shards"] >= before["shards"], after  # nothing listed is torn
    assert after["runs"] == before["runs"] + 1  # the loop started again after the boot, as a new run
    deadline = time.monotonic() + 300
    while (resumed := shards())["decisions"] <= after["decisions"]:  # and its own shards land
        assert time.monotonic() < deadline, resumed
        time.sleep(2)
    assert resumed["bad"] == []
    assert pi.sh(f"ls -A {folder} | grep '\\.tmp$' || true").strip() == ""
    record("recording_power_cut", {"before": before, "after": after, "resumed": resumed})
