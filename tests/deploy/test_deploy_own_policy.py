"""A user's own policy goes to a board over SSH, self-tests there and plays."""

import json


def test_an_unseen_policy_deploys_over_ssh_and_plays(ssh_world, board_dir, own_bundles, tmp_path):
    board = board_dir()
    server = ssh_world.servers[0]
    run = ssh_world.cli("deploy", own_bundles["breakout_stacked"], "--to", ssh_world.target(server),
                        "--board-dir", board, *ssh_world.ssh_flags())
    assert run.returncode == 0, run.stdout + run.stderr
    assert "selftest" in run.stdout and ": ok" in run.stdout
    play = ssh_world.cli("run", "--on", ssh_world.target(server), "--max-steps", 150, "--reports", tmp_path / "r",
                         "--board-dir", board, *ssh_world.ssh_flags())
    assert play.returncode == 0, play.stdout + play.stderr
    (report,) = (tmp_path / "r").glob("*.json")
    data = json.loads(report.read_text())
    assert data["steps"] == 150 and data["env"]["game"] == "breakout"


def test_a_sensor_policy_deploys_and_self_tests_but_is_not_played(ssh_world, board_dir, own_bundles, tmp_path):
    board = board_dir()
    server = ssh_world.servers[0]
    run = ssh_world.cli("deploy", own_bundles["tutorial_lstm"], "--to", ssh_world.target(server),
                        "--board-dir", board, *ssh_world.ssh_flags())
    assert run.returncode == 0, run.stdout + run.stderr
    assert ": ok" in run.stdout
    play = ssh_world.cli("run", "--on", ssh_world.target(server), "--reports", tmp_path / "r",
                         "--board-dir", board, *ssh_world.ssh_flags())
    assert play.returncode != 0 and "no game to play" in play.stdout + play.stderr
