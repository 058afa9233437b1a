"""A board whose link dies or which stops answering: every command ends in bounded time and a rerun finishes.

The board is an sshd in its own network namespace, joined by a veth pair;
the tests cut that link (`ip link set ... down`, a blackhole route keeps the
traffic from leaking elsewhere) or freeze the board's sshd, at chosen
points of a deploy, a game, or a rollback. Silence timeout 4 s.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from campaign import trials

from deploy.link.ssh import SshTarget
from deploy.link.targets import DeployError
from deploy.release import DeployConfig, deploy, rollback, status
from deploy.remote_run import RunConfig, run_on

SILENCE = 4.0
# Noticing silence (4 s), plus a reconnect attempt's connect timeout (4 s), plus slack for a loaded machine.
BOUND = 15.0
CUT_SLACK = 1.5
"""docs/results.md's bound for a deploy cut mid-way: it gives up within the silence timeout plus this."""


def current_of(board: Path) -> str:
    return (board / "current").resolve().name


def test_a_link_cut_during_the_upload_ends_in_bounded_time_and_a_rerun_resumes(ssh_world, netns_board, bundles):
    nb = netns_board
    with nb.target(ssh_world) as target:
        old = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
    size = (bundles["stacked"] / "policy.onnx").stat().st_size
    seen = {"bytes": 0, "cut_at": None}

    def cut_half_way(name, n, total):
        seen["bytes"] += n
        if seen["cut_at"] is None and name.endswith("policy.onnx") and seen["bytes"] > size // 2:
            seen["cut_at"] = time.monotonic()
            nb.cut("host")

    with nb.target(ssh_world) as target, pytest.raises(DeployError) as err:
        deploy(target, DeployConfig(bundles["stacked"]), say=lambda _: None, progress=cut_half_way)
    took = time.monotonic() - seen["cut_at"]
    assert took < BOUND, f"the deploy took {took:.1f} s to give up"
    message = str(err.value)
    assert nb.address in message and "uploading policy.onnx" in message, message
    assert current_of(nb.board) == old.release, "the old release must stay current"

    nb.restore()
    lines = []
    with nb.target(ssh_world) as target:
        resumed = deploy(target, DeployConfig(bundles["stacked"]), say=lines.append)
    assert current_of(nb.board) == resumed.release
    assert resumed.uploaded_bytes < size, "the rerun resumes the partial upload"
    with nb.target(ssh_world) as target:
        assert status(target)["locked"] is False


def test_a_link_cut_on_the_board_side_during_the_self_test_ends_in_bounded_time(ssh_world, netns_board, bundles):
    nb = netns_board
    with nb.target(ssh_world) as target:
        old = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
    seen = {}

    def say(line):
        if "verified by sha256" in line:
            seen["cut_at"] = time.monotonic()
            nb.cut("board")

    with nb.target(ssh_world) as target, pytest.raises(DeployError, match="self-test") as err:
        deploy(target, DeployConfig(bundles["lstm"]), say=say)
    assert time.monotonic() - seen["cut_at"] < BOUND
    assert nb.address in str(err.value)
    assert current_of(nb.board) == old.release
    nb.restore()
    with nb.target(ssh_world) as target:
        done = deploy(target, DeployConfig(bundles["lstm"]), say=lambda _: None)
    assert current_of(nb.board) == done.release


class _CutAfterSwitchSent(SshTarget):
    """Cuts the link right after the switch command reached the board: the board switches, we never hear."""

    netns_board = None

    def _collect(self, channel, timeout, on_line, what):
        if what == "switching current":
            self.netns_board.cut("board")
        return super()._collect(channel, timeout, on_line, what)


def test_a_link_cut_during_the_switch_is_reported_truthfully_and_a_rerun_completes(ssh_world, netns_board, bundles):
    nb = netns_board
    with nb.target(ssh_world) as target:
        old = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
    _CutAfterSwitchSent.netns_board = nb
    target = _CutAfterSwitchSent(ssh_world.user, nb.address, None, nb.opts(ssh_world))
    with target, pytest.raises(DeployError) as err:
        deploy(target, DeployConfig(bundles["stacked"]), say=lambda _: None)
    message = str(err.value)
    assert "switching current" in message and "either its old release or" in message, message
    new = message.split("either its old release or ", 1)[1].split(",")[0]
    # Never in between: current is one whole, verified release.
    assert current_of(nb.board) in (old.release, new)
    assert (nb.board / "current" / ".verified").is_file()
    nb.restore()
    with nb.target(ssh_world) as target:
        done = deploy(target, DeployConfig(bundles["stacked"]), say=lambda _: None)
    assert done.release == new == current_of(nb.board)


def test_a_link_cut_during_a_game_ends_the_run_in_bounded_time(ssh_world, netns_board, bundles, tmp_path):
    nb = netns_board
    with nb.target(ssh_world) as target:
        deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
    started = {}

    def cut_on_first_line(line):
        if "episode 1/" in line and not started:
            started["at"] = time.monotonic()
            nb.cut("host")

    with nb.target(ssh_world) as target, pytest.raises(DeployError, match="play") as err:
        run_on(target, RunConfig(episodes=50, reports=tmp_path / "reports"), on_line=cut_on_first_line)
    assert time.monotonic() - started["at"] < BOUND
    assert nb.address in str(err.value)


def _sshd_pids(nb):
    pids = subprocess.run(["ip", "netns", "pids", nb.netns], capture_output=True, text=True).stdout.split()
    return [p for p in pids if Path(f"/proc/{p}/comm").read_text().strip().startswith("sshd")]


def test_a_frozen_board_is_noticed_by_the_watchdog_on_status_and_rollback(ssh_world, netns_board, bundles):
    # The link stays up and the kernel still acknowledges packets; only the board's ssh stops answering.
    nb = netns_board
    with nb.target(ssh_world) as target:
        deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
        deploy(target, DeployConfig(bundles["stacked"]), say=lambda _: None)
    before = current_of(nb.board)
    for action in (status, rollback):
        target = nb.target(ssh_world)
        frozen = _sshd_pids(nb)
        for pid in frozen:
            os.kill(int(pid), signal.SIGSTOP)
        started = time.monotonic()
        try:
            with target, pytest.raises(DeployError, match="did not answer for 4 s"):
                action(target)
        finally:
            for pid in frozen:
                os.kill(int(pid), signal.SIGCONT)
        assert time.monotonic() - started < BOUND
        assert current_of(nb.board) == before


def test_a_dead_board_in_a_fleet_fails_alone_and_in_bounded_time(ssh_world, netns_board, board_dir, bundles,
                                                                 tmp_path):
    nb = netns_board
    nb.cut("host")
    live = board_dir("live")
    known = tmp_path / "known_both"
    known.write_text(nb.known_hosts.read_text() + ssh_world.known_hosts.read_text())
    started = time.monotonic()
    run = ssh_world.cli("deploy", bundles["dqn"], "--to", nb.address, "--to", ssh_world.target(ssh_world.servers[0]),
                        "--silence-timeout", SILENCE, "--known-hosts", known, "-i", ssh_world.key,
                        "--ssh-config", ssh_world.ssh_config, "--board-dir", live, timeout=120)
    took = time.monotonic() - started
    assert run.returncode == 1
    table = run.stdout.split("release / reason", 1)[1].strip().splitlines()
    dead = next(line for line in table if line.startswith(nb.address))
    assert "FAILED" in dead and "cannot reach" in dead
    assert any(" ok " in line for line in table), table
    assert (live / "current" / ".verified").is_file()
    assert took < 60, f"the fleet waited {took:.0f} s on its dead board"


class CutAtEvent:
    """Cuts the link from inside a running deploy, at its n-th step or upload chunk: every deploy is cut mid-way."""

    def __init__(self, nb, side: str, at: int | None) -> None:
        self.nb, self.side, self.at, self.events, self.cut_at = nb, side, at, 0, None

    def event(self, *_) -> None:
        self.events += 1
        if self.events == self.at:
            self.nb.cut(self.side)
            self.cut_at = time.monotonic()


def _fresh_board(nb, trial: int) -> Path:
    board = nb.board.parent / f"cuts-{trial}"
    board.mkdir()
    (board / "venvs").symlink_to(nb.board / "venvs", target_is_directory=True)
    return board


@pytest.mark.alone  # CUT_SLACK is 1.5 s
@pytest.mark.campaign
def test_twenty_link_cuts_at_random_points_all_recover(ssh_world, netns_board, bundles):
    # The figure of docs/results.md (20 cuts under `make campaigns`; the tiers cut 2: one on each side):
    # each deploy is cut while it runs (during the lock, the venv check, the upload, the checksums, the self-test
    # or just before the switch), gives up within the silence timeout plus CUT_SLACK seconds, and a rerun after
    # the link is back finishes it, verified.
    import random
    import statistics

    nb = netns_board
    rng = random.Random(7)
    kinds = ["dqn", "stacked", "lstm"]
    events = {}
    cuts = trials(2, 20)
    for kind in kinds[:cuts]:  # how many steps and upload chunks an uncut deploy of each bundle cut reports
        count = CutAtEvent(nb, "host", None)
        with nb.target(ssh_world, board_dir=str(_fresh_board(nb, -1 - kinds.index(kind)))) as target:
            deploy(target, DeployConfig(bundles[kind]), say=count.event, progress=count.event)
        events[kind] = count.events
    cut, recovered, noticed = 0, 0, []
    for trial in range(cuts):
        kind, board = kinds[trial % 3], _fresh_board(nb, trial)
        cutter = CutAtEvent(nb, "host" if trial % 2 else "board", rng.randint(1, events[kind]))
        try:
            with nb.target(ssh_world, board_dir=str(board)) as target:
                deploy(target, DeployConfig(bundles[kind]), say=cutter.event, progress=cutter.event)
        except DeployError:
            if cutter.cut_at is not None:
                cut += 1
                noticed.append(time.monotonic() - cutter.cut_at)
        nb.restore()
        assert not (board / "current").exists() or (board / "current" / ".verified").is_file()
        with nb.target(ssh_world, board_dir=str(board)) as target:
            done = deploy(target, DeployConfig(bundles[kind]), say=lambda _: None)
        if current_of(board) == done.release and (board / "current" / ".verified").is_file():
            recovered += 1
    # pytest tests/deploy/test_link_faults.py -k twenty -s
    print(f"\n{cuts} deploys, {cut} cut while they ran, {recovered} recovered by a rerun; each gave up after the cut "
          f"in median {statistics.median(noticed or [0]):.1f} s, max {max(noticed or [0]):.1f} s (silence {SILENCE} s)")
    assert cut == cuts, f"only {cut} of {cuts} deploys were cut while they ran"
    assert recovered == cuts
    assert max(noticed) <= SILENCE + CUT_SLACK, noticed
