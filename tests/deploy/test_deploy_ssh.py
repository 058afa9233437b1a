"""A user deploys bundles to boards over a real SSH server and runs them there."""

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from deploy.link.ssh import SshTarget
from deploy.link.targets import DeployError
from deploy.release import DeployConfig, deploy, status
from device.manifest import EXIT_BAD_INPUT


def current_of(board: Path) -> str:
    return (board / "current").resolve().name


def test_deploy_run_and_fetch_the_report_over_ssh(ssh_world, board_dir, bundles, tmp_path):
    board = board_dir()
    server = ssh_world.servers[0]
    run = ssh_world.cli("deploy", bundles["stacked"], "--to", ssh_world.target(server), "--board-dir", board,
                        *ssh_world.ssh_flags())
    assert run.returncode == 0, run.stdout + run.stderr
    assert "selftest" in run.stdout and ": ok" in run.stdout
    assert (board / "current" / ".verified").is_file()
    play = ssh_world.cli("run", "--on", ssh_world.target(server), "--episodes", 1, "--max-steps", 120,
                         "--reports", tmp_path / "reports", "--board-dir", board, *ssh_world.ssh_flags())
    assert play.returncode == 0, play.stdout + play.stderr
    assert "episode 1/1" in play.stdout  # streamed from the board
    assert "steps/s" in play.stdout and "p99" in play.stdout
    reports = list((tmp_path / "reports").glob("*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["steps"] == 120 and report["bundle_id"].startswith("stacked-")


def test_first_deploy_creates_the_board_folder(ssh_world, ssh_opts, bundles, tmp_path):
    board = tmp_path / "fresh" / "edgerl"  # nothing there yet, as on a new board
    server = ssh_world.servers[0]
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board)) as target:
        result = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
        assert status(target)["locked"] is False
    assert current_of(board) == result.release and not result.venv_reused


def test_ssh_config_alias_user_port_and_identity_are_honoured(ssh_world, board_dir, bundles):
    board = board_dir()
    flags = ["--known-hosts", ssh_world.known_hosts, "--ssh-config", ssh_world.ssh_config]  # no -i: from config
    run = ssh_world.cli("deploy", bundles["dqn"], "--to", "board1", "--board-dir", board, *flags)
    assert run.returncode == 0, run.stdout + run.stderr
    st = ssh_world.cli("status", "--on", "board1", "--board-dir", board, *flags)
    assert json.loads(st.stdout)["current"].startswith("dqn-")


def test_redeploy_of_a_new_policy_reuses_the_venv_and_uploads_only_what_changed(ssh_world, ssh_opts, board_dir,
                                                                                bundles):
    board = board_dir()
    server = ssh_world.servers[0]
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board)) as target:
        first = deploy(target, DeployConfig(bundles["stacked"]), say=lambda _: None)
        second = deploy(target, DeployConfig(bundles["lstm"]), say=lambda _: None)
    changed = sum((bundles["lstm"] / n).stat().st_size for n in ("policy.onnx", "golden.npz", "manifest.json"))
    assert second.venv_reused and second.reused_files >= 9  # the device package is linked, not sent
    assert second.uploaded_bytes <= changed
    assert second.previous.endswith(first.release)
    assert current_of(board) == second.release
    print(f"redeploy (policy only) over loopback SSH: {second.seconds:.2f} s, {second.uploaded_bytes} bytes")
    assert second.seconds < 10  # the figure itself is measured in bench/redeploy.py


def test_rollback_makes_the_previous_release_current(ssh_world, ssh_opts, board_dir, bundles):
    board = board_dir()
    server = ssh_world.servers[0]
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board)) as target:
        first = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
        second = deploy(target, DeployConfig(bundles["stacked"]), say=lambda _: None)
    assert current_of(board) == second.release
    run = ssh_world.cli("rollback", "--on", ssh_world.target(server), "--board-dir", board, *ssh_world.ssh_flags())
    assert run.returncode == 0, run.stderr
    assert current_of(board) == first.release
    assert (board / "previous").resolve().name == second.release


def test_unknown_host_is_refused_until_the_user_accepts_it(ssh_world, board_dir, bundles, tmp_path):
    board = board_dir()
    server = ssh_world.servers[0]
    known = tmp_path / "known_hosts"
    known.write_text("")
    flags = ["--known-hosts", known, "--ssh-config", ssh_world.ssh_config, "-i", ssh_world.key]
    run = ssh_world.cli("status", "--on", ssh_world.target(server), "--board-dir", board, *flags)
    assert run.returncode == 2
    assert "not in" in run.stderr and "--accept-new" in run.stderr and "Traceback" not in run.stderr
    run = ssh_world.cli("status", "--on", ssh_world.target(server), "--board-dir", board, "--accept-new", *flags)
    assert run.returncode == 0, run.stderr
    assert server.host_pub.split()[1] in known.read_text()
    # Once recorded, the key is checked without --accept-new.
    assert ssh_world.cli("status", "--on", ssh_world.target(server), "--board-dir", board, *flags).returncode == 0


def test_changed_host_key_is_always_refused(ssh_world, board_dir, tmp_path):
    board = board_dir()
    server, other = ssh_world.servers
    known = tmp_path / "known_hosts"
    # The board answers with a key other than the one recorded for it.
    known.write_text(f"[127.0.0.1]:{server.port} {other.host_pub}\n")
    flags = ["--known-hosts", known, "--ssh-config", ssh_world.ssh_config, "-i", ssh_world.key]
    for extra in ([], ["--accept-new"]):
        run = ssh_world.cli("status", "--on", ssh_world.target(server), "--board-dir", board, *extra, *flags)
        assert run.returncode == 2
        assert "CHANGED" in run.stderr and "Traceback" not in run.stderr


def test_hostile_paths_inject_nothing(ssh_world, ssh_opts, board_dir, bundles, tmp_path):
    canary = tmp_path / "pwned"
    hostile = board_dir(f"it's a board; touch {canary} $(touch {canary}) `touch {canary}`")
    server = ssh_world.servers[0]
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(hostile)) as target:
        result = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
        assert status(target)["current"] == result.release
    assert not canary.exists()
    assert (hostile / "releases" / result.release / "bundle" / "policy.onnx").is_file()


def test_tampered_upload_keeps_old_release(ssh_world, ssh_opts, board_dir, bundles):
    board = board_dir()
    server = ssh_world.servers[0]
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board)) as target:
        old = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
        real_put = target.put

        def tampering_put(local, remote, progress=None):
            sent = real_put(local, remote, progress)
            if remote.endswith("policy.onnx.part"):
                with target.sftp.open(remote, "r+b") as fh:  # a man in the middle flips bytes
                    fh.seek(1000)
                    fh.write(b"\x00" * 16)
            return sent

        target.put = tampering_put
        with pytest.raises(DeployError, match="bundle/policy.onnx did not match its sha256"):
            deploy(target, DeployConfig(bundles["stacked"]), say=lambda _: None)
        assert current_of(board) == old.release
        target.put = real_put
        fixed = deploy(target, DeployConfig(bundles["stacked"]), say=lambda _: None)
    assert current_of(board) == fixed.release


def test_upload_cut_mid_transfer_resumes_where_it_stopped(ssh_world, ssh_opts, board_dir, bundles):
    board = board_dir()
    server = ssh_world.servers[0]
    onnx_size = (bundles["lstm"] / "policy.onnx").stat().st_size
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board, retries=0)) as target:
        old = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
        seen = {"bytes": 0}

        def cut(name, n, total):
            seen["bytes"] += n
            if name.endswith("policy.onnx") and seen["bytes"] > onnx_size // 2:
                target.client.get_transport().close()  # the link drops half-way through the model

        with pytest.raises(DeployError, match="rerun to resume"):
            deploy(target, DeployConfig(bundles["lstm"]), say=lambda _: None, progress=cut)
    assert current_of(board) == old.release
    partial = list((board / "incoming").rglob("policy.onnx.part"))
    assert partial and 0 < partial[0].stat().st_size < onnx_size
    already = partial[0].stat().st_size
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board)) as target:
        resumed = deploy(target, DeployConfig(bundles["lstm"]), say=lambda _: None)
    assert current_of(board) == resumed.release
    assert resumed.uploaded_bytes <= onnx_size - already + 200_000  # the rest of the model + small files


def test_connection_loss_is_retried_with_backoff_within_one_deploy(ssh_world, ssh_opts, board_dir, bundles):
    board = board_dir()
    server = ssh_world.servers[0]
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board, retries=2)) as target:
        state = {"cut": False, "bytes": 0}

        def cut_once(name, n, total):
            state["bytes"] += n
            if not state["cut"] and name.endswith("policy.onnx") and state["bytes"] > 2_000_000:
                state["cut"] = True
                target.client.get_transport().close()

        result = deploy(target, DeployConfig(bundles["stacked"]), say=lambda _: None, progress=cut_once)
    assert state["cut"] and current_of(board) == result.release


def test_failing_selftest_leaves_the_old_release_current(ssh_world, ssh_opts, board_dir, bundles, tmp_path):
    import numpy as np

    from device.manifest import sha256_file

    bad = tmp_path / "bad-bundle"
    import shutil

    shutil.copytree(bundles["stacked"], bad)
    golden = dict(np.load(bad / "golden.npz"))
    golden["action_value"] = golden["action_value"] + 1.0
    np.savez_compressed(bad / "golden.npz", **golden)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["files"]["golden.npz"] = sha256_file(bad / "golden.npz")
    (bad / "manifest.json").write_text(json.dumps(manifest))
    board = board_dir()
    server = ssh_world.servers[0]
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board)) as target:
        old = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
        with pytest.raises(DeployError, match="self-test failed.*old release is still current"):
            deploy(target, DeployConfig(bad), say=lambda _: None)
    assert current_of(board) == old.release


def test_two_deploys_at_once_to_one_board(ssh_world, ssh_opts, board_dir, bundles):
    board = board_dir()
    server = ssh_world.servers[0]
    outcomes = []

    def one(kind):
        try:
            with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board)) as target:
                outcomes.append(deploy(target, DeployConfig(bundles[kind]), say=lambda _: None))
        except DeployError as err:
            outcomes.append(err)

    threads = [threading.Thread(target=one, args=(k,)) for k in ("dqn", "stacked")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [o for o in outcomes if isinstance(o, DeployError)]
    oks = [o for o in outcomes if not isinstance(o, DeployError)]
    assert oks, errors
    assert all("another deploy is running" in str(e) for e in errors), errors
    assert current_of(board) in {o.release for o in oks}
    assert (board / "current" / ".verified").is_file()
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board)) as target:
        assert status(target)["locked"] is False


def test_fleet_deploys_in_parallel_and_reports_each_board(ssh_world, bundles, tmp_path):
    # Each sshd starts SFTP in its own home, so the default board folder (~/edgerl) differs per board.
    for server in ssh_world.servers:
        (server.home / "edgerl").mkdir(exist_ok=True)
        if not (server.home / "edgerl" / "venvs").exists():
            (server.home / "edgerl" / "venvs").symlink_to(ssh_world.venvs)
    inventory = tmp_path / "inventory"
    inventory.write_text(f"# one board per line\n{ssh_world.target(ssh_world.servers[1])}\n")
    # Two boards, plus one that does not answer: it fails alone.
    run = ssh_world.cli("deploy", bundles["dqn"], "--to", ssh_world.target(ssh_world.servers[0]),
                        "--inventory", inventory, "--to", "nobody@127.0.0.1:1", *ssh_world.ssh_flags())
    assert run.returncode == 1
    assert "acting on 3 boards: 2 from --to and 1 from " in run.stderr  # both given: said, never merged silently
    table = run.stdout.split("release / reason", 1)[1].strip().splitlines()
    assert len(table) == 3, table
    assert sum(" ok " in line for line in table) == 2 and sum("FAILED" in line for line in table) == 1
    assert "cannot reach" in next(line for line in table if "FAILED" in line)
    for server in ssh_world.servers:
        assert (server.home / "edgerl" / "current" / ".verified").is_file()


def test_a_port_that_accepts_tcp_but_never_speaks_ssh_is_one_line_not_paramikos_traceback(ssh_world):
    # A board whose sshd hangs (or a wrong port with some other, silent service): paramiko's transport thread
    # logged its own traceback through the root logger's last resort, or the user read "No existing session".
    silent = socket.create_server(("127.0.0.1", 0))
    held = []
    accepting = threading.Thread(target=lambda: held.append(silent.accept()), daemon=True)
    accepting.start()
    try:
        done = subprocess.run([sys.executable, "-m", "host.cli", "status", "--on",
                               f"{ssh_world.user}@127.0.0.1:{silent.getsockname()[1]}", *ssh_world.ssh_flags(),
                               "--silence-timeout", "3"], capture_output=True, text=True, timeout=120,
                              env=ssh_world.env())
    finally:
        silent.close()
        for conn, _ in held:
            conn.close()
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not answer as an SSH server within 3 s" in lines[0], done.stderr
