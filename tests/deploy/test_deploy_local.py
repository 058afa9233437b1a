"""The embedded default: a board folder on this machine, same release logic as SSH."""

import json

import in_process


def edgerl(*args, env=None):
    return in_process.edgerl(*args, env=env, timeout=600)


def test_local_board_deploy_run_status_rollback(bundles, tmp_path, ssh_world):
    board = tmp_path / "board"
    board.mkdir()
    (board / "venvs").symlink_to(ssh_world.venvs)
    env = ssh_world.env()
    first = edgerl("deploy", bundles["dqn"], "--to", f"local:{board}", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    second = edgerl("deploy", bundles["stacked"], "--to", f"local:{board}", env=env)
    assert second.returncode == 0 and "venv reused" in second.stdout
    run = edgerl("run", "--on", f"local:{board}", "--max-steps", 50, "--reports", tmp_path / "r", env=env)
    assert run.returncode == 0, run.stderr
    assert "steps/s" in run.stdout
    status = json.loads(edgerl("status", "--on", f"local:{board}", env=env).stdout)
    assert status["current"].startswith("stacked-") and status["previous"].startswith("dqn-")
    assert edgerl("rollback", "--on", f"local:{board}", env=env).returncode == 0
    assert json.loads(edgerl("status", "--on", f"local:{board}", env=env).stdout)["current"].startswith("dqn-")


def test_deploying_a_tampered_bundle_touches_no_board(bundle_copy, tmp_path):
    bundle = bundle_copy("dqn")
    (bundle / "golden.npz").write_bytes(b"x")
    board = tmp_path / "board"
    run = edgerl("deploy", bundle, "--to", f"local:{board}")
    assert run.returncode == 1 and "golden.npz" in run.stderr and "sha256" in run.stderr
    assert not board.exists()
