"""A team that runs its fleet with Ansible: the collection `edgerl.board`, built and installed offline, rolls a
release out over the twelve-board lab with ansible-playbook, as `edgerl deploy --inventory` does."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
from collection_world import ansible_env, answer, install_collection, run_module
from fleet_world import REPO, everyone_on

from deploy.ansible.steps import bundle_release

pytestmark = pytest.mark.xdist_group("fleet")


@pytest.fixture(scope="module")
def ansible(tmp_path_factory, fleet):
    """The collection built into its tarball and installed from it, as a user installs it; a way to run plays."""
    root = tmp_path_factory.mktemp("ansible")
    install_collection(root)

    def module(host: str, name: str, **kw: object) -> subprocess.CompletedProcess:
        """One of the collection's modules on one host, as `ansible HOST -m edgerl.board.NAME -a ...`."""
        return run_module(root, fleet.inventory, host, name, known_hosts=fleet.known_hosts, ssh_config="/dev/null",
                          **kw)

    def rollout(*args: object) -> list[str]:
        return ["ansible-playbook", "-i", str(fleet.inventory), "edgerl.board.rollout",
                "-e", json.dumps({"edgerl_known_hosts": str(fleet.known_hosts), "edgerl_ssh_config": "/dev/null"}),
                *map(str, args)]

    def play(*args: object, check: bool = False, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(rollout(*args, *(["--check"] if check else [])), capture_output=True, text=True,
                              timeout=timeout, env=ansible_env(root), cwd=root)

    def started(*args: object) -> subprocess.Popen:
        """The rollout play as a process of its own group (a Ctrl-C at the terminal reaches the whole group)."""
        return subprocess.Popen(rollout(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=ansible_env(root), cwd=root, start_new_session=True)

    def doc(*names: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ansible-doc", *names], capture_output=True, text=True, timeout=300,
                              env=ansible_env(root))

    play.module, play.doc, play.started = module, doc, started
    return play


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP's counts per host."""
    return {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
            for m in re.finditer(r"^(pi\d\d)\s+:\s+(.*)$", stdout, re.M)}


def test_the_playbook_rolls_out_in_waves_and_a_second_run_changes_nothing(fleet, ansible, bundles):
    old = everyone_on(fleet, bundles["dqn"])
    # Check mode first: every board says it would switch, and none does.
    checked = ansible("-e", f"edgerl_bundle={bundles['stacked']}", check=True)
    assert checked.returncode == 0, checked.stdout[-3000:]
    assert set(fleet.currents().values()) == {old}
    assert all(counts["changed"] >= 1 for counts in recap(checked.stdout).values())

    started = time.monotonic()
    done = ansible("-e", f"edgerl_bundle={bundles['stacked']}")
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:]
    new = set(fleet.currents().values())
    assert len(new) == 1 and old not in new
    fleet.releases[str(bundles["stacked"])] = next(iter(new))  # where the next test starts
    # serial [1, "25%", "100%"]: the canary alone, then three, then the rest.
    batches = re.findall(r"^PLAY \[edgerl rollout, wave by wave\]", done.stdout, re.M)
    assert len(batches) == 3, done.stdout[-3000:]
    assert done.stdout.index("pi01") < done.stdout.index("pi02")

    started = time.monotonic()
    again = ansible("-e", f"edgerl_bundle={bundles['stacked']}")
    rerun = time.monotonic() - started
    assert again.returncode == 0, again.stdout[-3000:]
    assert all(counts["changed"] == 0 and counts["failed"] == 0 for counts in recap(again.stdout).values()), \
        again.stdout[-3000:]
    print(f"\nfigure: ansible-playbook rollout of 12 boards 1,25%,100%: {took:.1f} s; idempotent rerun {rerun:.1f} s")


def test_a_wave_past_max_fail_goes_back_and_later_boards_are_not_touched(fleet, ansible, bundles):
    # From where the fleet is (the rollout above left it on stacked: no twelve deploys to set it up), back to dqn.
    old = everyone_on(fleet, bundles["stacked"])
    for name in ("pi02", "pi03"):  # two of wave 2's three boards cannot self-test
        fleet.break_board(name)
    try:
        done = ansible("-e", f"edgerl_bundle={bundles['dqn']}", "-e", "edgerl_max_fail_percentage=34")
    finally:
        for name in ("pi02", "pi03"):
            fleet.mend_board(name)
    assert done.returncode != 0, done.stdout[-3000:]
    currents = fleet.currents()
    assert currents["pi01"] != old  # wave 1 passed and stays
    assert currents["pi04"] == old  # wave 2's switched board went back
    assert all(currents[n] == old for n in fleet.names[4:])  # wave 3 never started
    counts = recap(done.stdout)
    assert counts["pi02"]["failed"] == 1 and counts["pi03"]["failed"] == 1
    assert "pi05" not in counts  # not even contacted
    assert "self-test failed" in done.stdout


def test_a_canary_that_fails_stops_the_play_after_the_first_wave_and_no_other_board_is_contacted(fleet, ansible,
                                                                                                 bundles):
    # From where the test above left the lab: pi01 (the canary) on dqn, the rest on stacked.
    before = fleet.currents()
    fleet.break_board("pi01")  # its self-test fails: even a generous max_fail_percentage stops at one board of one
    try:
        broken = ansible("-e", f"edgerl_bundle={bundles['stacked']}", "-e", "edgerl_max_fail_percentage=50")
    finally:
        fleet.mend_board("pi01")
    assert broken.returncode != 0 and set(recap(broken.stdout)) == {"pi01"}, broken.stdout[-3000:]
    assert "self-test failed" in broken.stdout and fleet.currents() == before
    # Its games below the teacher's evaluation: switched, judged, put back; the play stops there too.
    games = ansible("-e", f"edgerl_bundle={bundles['stacked']}", "-e", "edgerl_canary_games=1",
                    "-e", f"edgerl_canary_against={REPO / 'models' / 'pong'}", "-e", "edgerl_max_fail_percentage=50")
    assert games.returncode != 0 and set(recap(games.stdout)) == {"pi01"}, games.stdout[-3000:]
    assert "canary refused: its 1 games scored" in games.stdout and fleet.currents() == before, games.stdout[-3000:]


def test_bad_arguments_are_ansibles_own_one_line_errors(fleet, ansible, bundles, tmp_path):
    keep = ansible("-e", f"edgerl_bundle={bundles['stacked']}", "-e", "edgerl_keep=many", "--limit", "pi01")
    assert keep.returncode != 0
    assert re.search(r"argument 'keep' is of type .* and we were unable to convert to int", keep.stdout), \
        keep.stdout[-2000:]
    missing = ansible("-e", f"edgerl_bundle={tmp_path / 'no-such-bundle'}", "--limit", "pi01")
    assert missing.returncode != 0 and "no-such-bundle" in missing.stdout, missing.stdout[-2000:]
    rateless = ansible.module("pi01", "service", bundle=bundles["stacked"], io=f"{REPO}/examples/cart_io.py:Cart")
    assert "pi01 | FAILED!" in rateless.stdout, rateless.stdout
    assert answer(rateless)["msg"] == "io needs hz: how many decisions per second your plant wants"


def test_a_boards_recordings_come_to_the_controller_checked_and_are_pruned_there(fleet, ansible, bundles, tmp_path):
    board = fleet.dirs["pi05"]
    on = ansible.module("pi05", "release", bundle=bundles["stacked"])  # where the rollouts above left it, or now
    assert "pi05 | " in on.stdout and "FAILED" not in on.stdout, on.stdout[-2000:]
    recorded = fleet.world.cli("run", "--on", f"local:{board}", "--max-steps", "60", "--record", "day1", "--reports",
                               tmp_path / "reports")
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    listed = answer(ansible.module("pi05", "data"))
    assert listed["changed"] is False and listed["recordings"]["day1"]["decisions"] == 60
    pulled = answer(ansible.module("pi05", "data", out=tmp_path / "data", prune=True))
    assert pulled["changed"] is True and pulled["fetched"] >= 1 and pulled["pruned"] == pulled["fetched"], pulled
    from host.data import load_episodes

    assert load_episodes(tmp_path / "data" / "pi05" / "day1").shape[0] == 60  # as `edgerl data pull` lays them out
    again = answer(ansible.module("pi05", "data", out=tmp_path / "data"))
    assert again["changed"] is False and again["fetched"] == 0


def test_every_module_documents_itself_to_ansible_doc(ansible):
    names = [f"edgerl.board.{m}" for m in ("release", "service", "rollback", "facts", "data", "canary")]
    shown = ansible.doc(*names)
    assert shown.returncode == 0, shown.stderr
    for name in names:
        assert f"> MODULE {name} (" in shown.stdout, shown.stdout[:2000]
    assert shown.stdout.count("known_hosts") >= len(names)  # the link's options, from the shared doc fragment


def test_a_canary_below_its_teachers_evaluation_fails_the_host(fleet, ansible, bundles, tmp_path):
    pong = REPO / "models" / "pong"
    assert "pi06 | " in ansible.module("pi06", "release", bundle=bundles["stacked"]).stdout  # an untrained student
    played = ansible.module("pi06", "canary", bundle=bundles["stacked"], against=pong, games=1)
    checked = answer(played)
    assert "FAILED!" in played.stdout and "canary refused: its 1 games scored" in checked["msg"], checked
    assert "below" in checked["msg"] and "evaluated +18.2" in checked["msg"] and checked["changed"] is False
    assert checked["floor"] == 16.2 and checked["mean"] < 16.2
    unjudged = ansible.module("pi06", "canary", bundle=bundles["stacked"], games=1)  # evaluated by no one
    assert "FAILED!" in unjudged.stdout and "edgerl evaluate" in answer(unjudged)["msg"], unjudged.stdout


def test_a_board_hung_mid_play_fails_alone_within_its_timeout_and_the_others_complete(fleet, ansible, bundles):
    fleet.freeze("pi07")  # its sshd stopped: connections open, nothing ever answers
    try:
        started = time.monotonic()
        done = ansible("-e", f"edgerl_bundle={bundles['dqn']}", "-e", "edgerl_max_fail_percentage=50",
                       "-e", "edgerl_silence_timeout=10", timeout=300)
        took = time.monotonic() - started
    finally:
        fleet.thaw("pi07")
    counts = recap(done.stdout)
    assert done.returncode != 0 and counts["pi07"]["failed"] == 1, done.stdout[-3000:]
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for n, c in counts.items() if n != "pi07"), counts
    new = bundle_release(bundles["dqn"])
    assert [n for n, r in fleet.currents().items() if r != new] == ["pi07"]  # it kept its release
    assert took < 120, f"the play took {took:.0f} s with one board hung (silence timeout 10 s)"
    print(f"\nfigure: ansible-playbook rollout with pi07 hung: {took:.1f} s")


def test_ctrl_c_during_a_play_leaves_no_board_locked_or_half_switched(fleet, ansible, bundles):
    old = set(fleet.currents().values())
    play = ansible.started("-e", f"edgerl_bundle={bundles['stacked']}")
    seen = []
    for line in play.stdout:  # until the second wave's boards are being released
        seen.append(line)
        if sum("TASK [The release on the board" in s for s in seen) == 2:
            break
    os.killpg(play.pid, signal.SIGINT)  # the terminal's Ctrl-C reaches the whole foreground group
    try:
        rest = play.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:
        os.killpg(play.pid, signal.SIGKILL)
        raise AssertionError("the play did not end within 120 s of its Ctrl-C; it printed:\n" + "".join(seen) +
                             play.communicate()[0]) from None
    new = bundle_release(bundles["stacked"])
    # Ansible stops the play, or (once in our runs: the SIGINT landed in Python's at-fork hook as a worker was
    # forked, "Exception ignored in _releaseLock") loses the Ctrl-C and finishes it: then every board is on the new.
    assert play.returncode != 0 or set(fleet.currents().values()) == {new}, "".join(seen) + rest
    shown = fleet.cli("status", "--json")
    boards = json.loads(shown.stdout)
    assert len(boards) == 12 and not any(b["locked"] for b in boards), shown.stdout
    assert not any(b.get("damaged") for b in boards), shown.stdout
    currents = set(fleet.currents().values())
    assert currents <= old | {new}, (currents, old)  # each old, or new and whole
