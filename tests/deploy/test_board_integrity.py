"""Nothing runs or becomes current without its checksums; locks die with their deploy; Ctrl-C tells the truth."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import in_process
import pytest

from deploy.link.ssh import SshTarget
from deploy.link.targets import DeployError, LocalTarget
from deploy.release import DeployConfig, deploy, rollback, status
from deploy.remote_run import RunConfig, run_on


def current_of(board: Path) -> str:
    return (board / "current").resolve().name


def _ssh(ssh_world, ssh_opts, board, **kw):
    return SshTarget(ssh_world.user, "127.0.0.1", ssh_world.servers[0].port, ssh_opts(board, **kw))


def test_run_refuses_a_current_release_whose_code_was_modified_and_a_redeploy_repairs_it(
        ssh_world, ssh_opts, board_dir, bundles, tmp_path):
    board = board_dir()
    with _ssh(ssh_world, ssh_opts, board) as target:
        first = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
    (board / "current" / "device" / "play.py").write_text("print('not what was verified')\n")
    run = ssh_world.cli("run", "--on", ssh_world.target(ssh_world.servers[0]), "--board-dir", board,
                        "--reports", tmp_path / "r", *ssh_world.ssh_flags())
    assert run.returncode == 1, run.stdout + run.stderr  # a failed check, as a failed self-test or verify
    assert "device/play.py was modified" in run.stderr and "Redeploy" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()

    lines = []
    with _ssh(ssh_world, ssh_opts, board) as target:
        repaired = deploy(target, DeployConfig(bundles["dqn"]), say=lines.append)
        assert repaired.release == first.release
        assert repaired.uploaded_bytes == (Path(__file__).parents[2] / "device" / "play.py").stat().st_size
        assert any("damaged" in line and "repairing" in line for line in lines), lines
        report, _ = run_on(target, RunConfig(max_steps=30, reports=tmp_path / "r"))
    assert report["steps"] == 30 and report["release"] == first.release


def test_a_flipped_byte_in_the_model_is_shown_by_status_and_a_redeploy_repairs_it(ssh_world, ssh_opts, board_dir,
                                                                                   bundles, tmp_path):
    board = board_dir()
    with _ssh(ssh_world, ssh_opts, board) as target:
        first = deploy(target, DeployConfig(bundles["stacked"]), say=lambda _: None)
        assert status(target)["damaged"] == []
    model = board / "current" / "bundle" / "policy.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # what an SD card going bad does
    model.write_bytes(bytes(data))

    # The board's status says which file, and exits as a failed check; the fleet's table too.
    shown = ssh_world.cli("status", "--on", ssh_world.target(ssh_world.servers[0]), "--board-dir", board,
                          *ssh_world.ssh_flags())
    assert shown.returncode == 1 and len(shown.stderr.strip().splitlines()) == 1, shown.stderr
    assert "is damaged: bundle/policy.onnx was modified" in shown.stderr and "redeploy" in shown.stderr
    (tmp_path / "hosts").write_text(f"local:{board}\n")
    fleet = ssh_world.cli("status", "--inventory", tmp_path / "hosts")
    assert fleet.returncode == 1 and "DAMAGED: bundle/policy.onnx was modified" in fleet.stdout, fleet.stdout

    with _ssh(ssh_world, ssh_opts, board) as target:
        again = deploy(target, DeployConfig(bundles["stacked"]), say=lambda _: None)
        assert status(target)["damaged"] == []
    assert again.release == first.release == current_of(board)
    assert 0 < again.uploaded_bytes <= model.stat().st_size + 1000
    assert (board / "current" / ".verified").is_file()


def test_rollback_refuses_a_broken_previous_release_and_keeps_current(ssh_world, ssh_opts, board_dir, bundles):
    board = board_dir()
    with _ssh(ssh_world, ssh_opts, board) as target:
        old = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
        new = deploy(target, DeployConfig(bundles["stacked"]), say=lambda _: None)
        previous = board / "releases" / old.release
        (previous / "device" / "atari.py").write_text("# edited on the board\n")
        with pytest.raises(DeployError, match="device/atari.py was modified.*current is unchanged"):
            rollback(target, say=lambda _: None)
        assert current_of(board) == new.release
        import shutil

        shutil.rmtree(previous / "bundle")
        with pytest.raises(DeployError, match="broken"):
            rollback(target, say=lambda _: None)
        assert current_of(board) == new.release
        assert status(target)["locked"] is False


def test_a_game_resolves_current_once_and_is_not_disturbed_by_a_rollback(ssh_world, bundles, tmp_path):
    board = tmp_path / "board"
    board.mkdir()
    (board / "venvs").symlink_to(ssh_world.venvs)
    target = LocalTarget(board)
    old = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
    new = deploy(target, DeployConfig(bundles["lstm"]), say=lambda _: None)
    flipped = []

    def flip_when_playing(line):
        if not flipped:
            flipped.append(rollback(LocalTarget(board), say=lambda _: None))

    report, _ = run_on(target, RunConfig(episodes=3, reports=tmp_path / "r"), on_line=flip_when_playing)
    assert flipped == [old.release] and current_of(board) == old.release
    assert report["release"] == new.release and report["bundle_id"].startswith("lstm-")
    assert len(report["episodes"]) == 3


def test_a_killed_deploy_leaves_no_lock_behind(ssh_world, board_dir, bundles):
    board = board_dir()
    with_target = [sys.executable, "-m", "host.cli", "deploy", str(bundles["lstm"]), "--to",
                   ssh_world.target(ssh_world.servers[0]), "--board-dir", str(board), *map(str, ssh_world.ssh_flags())]
    proc = subprocess.Popen(with_target, env=ssh_world.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not list(board.glob("incoming/*/bundle/*.part")) and not (board / "current").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the deploy never started uploading"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    started = time.monotonic()
    run = ssh_world.cli("deploy", bundles["lstm"], "--to", ssh_world.target(ssh_world.servers[0]),
                        "--board-dir", board, *ssh_world.ssh_flags())
    assert run.returncode == 0, run.stdout + run.stderr
    assert "another deploy" not in run.stdout + run.stderr
    assert time.monotonic() - started < 60
    assert current_of(board).startswith("lstm-")


def test_ctrl_c_during_the_upload_stops_before_the_switch_and_says_so(ssh_world, netns_board, bundles):
    nb = netns_board
    with nb.target(ssh_world) as target:
        old = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
    # A slow link (4 Mbit/s) keeps the upload going long enough to interrupt it.
    subprocess.run(["tc", "qdisc", "add", "dev", nb.host_if, "root", "tbf", "rate", "4mbit", "burst", "32kbit",
                    "latency", "400ms"], check=True)
    proc = subprocess.Popen([sys.executable, "-m", "host.cli", "deploy", str(bundles["stacked"]), "--to", nb.address,
                             *map(str, nb.flags(ssh_world))], env=ssh_world.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            # A shell's background job ignores SIGINT, and its children inherit that: undo it.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size > 100_000 for p in nb.board.glob("incoming/*/bundle/policy.onnx.part")):
        assert time.monotonic() < deadline and proc.poll() is None, "the upload never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "interrupted before the switch" in out + err and "still runs its old release" in out + err
    assert "Traceback" not in out + err
    assert current_of(nb.board) == old.release
    subprocess.run(["tc", "qdisc", "del", "dev", nb.host_if, "root"], check=True)
    with nb.target(ssh_world) as target:
        done = deploy(target, DeployConfig(bundles["stacked"]), say=lambda _: None)
        assert status(target)["locked"] is False
    assert current_of(nb.board) == done.release


def test_run_on_a_full_board_says_so_in_one_line(ssh_world, ssh_opts, bundles, small_disk_board, tmp_path):
    with _ssh(ssh_world, ssh_opts, small_disk_board) as target:
        deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
    filler = small_disk_board / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=64"], capture_output=True)
    run = ssh_world.cli("run", "--on", ssh_world.target(ssh_world.servers[0]), "--board-dir", small_disk_board,
                        "--max-steps", 20, "--reports", tmp_path / "r", *ssh_world.ssh_flags())
    assert run.returncode != 0
    assert "No space left" in run.stderr and "free space" in run.stderr and "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr


def test_local_run_on_a_missing_folder_creates_nothing(tmp_path):
    missing = tmp_path / "nowhere"
    run = subprocess.run([sys.executable, "-m", "host.cli", "run", "--on", f"local:{missing}"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2 and "no such board folder" in run.stderr
    assert not missing.exists()
    status_run = subprocess.run([sys.executable, "-m", "host.cli", "status", "--on", f"local:{missing}"],
                                capture_output=True, text=True, timeout=120)
    assert status_run.returncode == 2 and not missing.exists()


def test_concurrent_status_while_deploying_reports_the_lock(ssh_world, ssh_opts, board_dir, bundles):
    board = board_dir()
    seen = []
    with _ssh(ssh_world, ssh_opts, board) as target:

        def look(line):
            if "verified by sha256" in line:
                seen.append(status(LocalTarget(board))["locked"])

        deploy(target, DeployConfig(bundles["dqn"]), say=look)
        assert seen == [True] and status(target)["locked"] is False


def test_a_run_on_a_board_while_deploys_with_keep_1_land_on_it_ends_with_its_report(ssh_world, bundles, tmp_path):
    board = tmp_path / "board"
    board.mkdir()
    (board / "venvs").symlink_to(ssh_world.venvs)
    target = f"local:{board}"
    assert in_process.edgerl("deploy", bundles["dqn"], "--to", target).returncode == 0
    playing = current_of(board)
    run = subprocess.Popen([sys.executable, "-m", "host.cli", "run", "--on", target, "--episodes", "4", "--max-steps",
                            "250", "--reports", str(tmp_path / "r")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, cwd=Path(__file__).resolve().parents[2])
    for line in run.stdout:  # the board's play says when it starts: from then on it runs from its release
        if "playing " in line:
            break
    # Held still while the deploys land (the board's loop, paused), so they land in the middle of the run.
    (pid,) = subprocess.run(["pgrep", "-f", "--", f"-m device play {board}/releases/"], capture_output=True, text=True,
                            check=True).stdout.split()
    os.kill(int(pid), signal.SIGSTOP)
    try:
        for bundle in ("stacked", "lstm"):  # the run's release is neither current nor previous after the second
            assert in_process.edgerl("deploy", bundles[bundle], "--to", target, "--keep", "1").returncode == 0
        assert (board / "releases" / playing).is_dir()  # in use: not pruned
    finally:
        os.kill(int(pid), signal.SIGCONT)
    rest = run.communicate(timeout=300)[0]
    assert run.returncode == 0, rest
    (report,) = (tmp_path / "r").glob("*.json")
    played = json.loads(report.read_text())
    assert played["bundle_id"] == json.loads((bundles["dqn"] / "manifest.json").read_text())["bundle_id"]
    assert sum(e["steps"] for e in played["episodes"]) == 4 * 250
    # Once nothing runs from it, the next deploy's prune removes it.
    assert in_process.edgerl("deploy", bundles["dqn-stochastic"], "--to", target, "--keep", "1").returncode == 0
    assert not (board / "releases" / playing).exists()
