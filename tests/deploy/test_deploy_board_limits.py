"""Boards with little disk, little memory and no internet."""

from pathlib import Path

import pytest

from deploy.board.deploy_lock import is_locked
from deploy.install import InstallConfig
from deploy.link.ssh import SshTarget
from deploy.link.targets import DeployError
from deploy.release import DeployConfig, deploy, status


def test_full_disk_on_the_board_gives_a_clear_error_and_keeps_the_old_release(ssh_world, ssh_opts, bundles,
                                                                             small_disk_board):
    server = ssh_world.servers[0]
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(small_disk_board)) as target:
        old = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
        with pytest.raises(DeployError) as err:
            deploy(target, DeployConfig(bundles["lstm"]), say=lambda _: None)
    message = str(err.value)
    assert "out of disk space" in message and "old release is still current" in message
    assert (small_disk_board / "current").resolve().name == old.release
    assert (small_disk_board / "current" / ".verified").is_file()
    # The failed upload is gone (it only kept the board full), and so is the lock: a retry says the same thing.
    assert not list((small_disk_board / "incoming").glob("*"))
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(small_disk_board)) as target:
        assert status(target)["locked"] is False
        with pytest.raises(DeployError, match="out of disk space"):
            deploy(target, DeployConfig(bundles["lstm"]), say=lambda _: None)
    assert not list((small_disk_board / "incoming").glob("*"))
    # The lock is gone the moment the refused deploy has returned, every time (it once outlived it, 1 in ~98):
    # read at once, on the board's own folder, with no retry.
    for _ in range(4):
        with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(small_disk_board)) as target:
            with pytest.raises(DeployError, match="out of disk space"):
                deploy(target, DeployConfig(bundles["lstm"]), say=lambda _: None)
        assert not is_locked(str(small_disk_board))


def test_a_board_command_killed_by_a_signal_is_said_to_be_killed_not_a_lost_link(ssh_world, ssh_opts, board_dir):
    # The OOM killer's SIGKILL, as a Pi short of memory sends it to a pip install or a self-test.
    server = ssh_world.servers[0]
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board_dir())) as target:
        with pytest.raises(DeployError) as err:
            target.run(["sh", "-c", "echo started; kill -KILL $$"], what="the self-test")
        message = str(err.value)
        assert message.startswith(f"the self-test on {target.name} was killed before it finished"), message
        assert "dmesg" in message and "lost the connection" not in message
        # The link itself is fine: the next command runs on the same connection.
        assert target.run(["echo", "still here"]).stdout == "still here\n"


def _use_up_inodes(folder: Path) -> int:
    folder.mkdir()
    n = 0
    while True:
        try:
            (folder / str(n)).touch()
        except OSError as err:
            assert err.errno == 28
            return n
        n += 1


def test_a_board_out_of_inodes_gives_a_clear_error_and_keeps_the_old_release(ssh_world, ssh_opts, bundles,
                                                                            few_inodes_board):
    board = few_inodes_board
    server = ssh_world.servers[0]
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board)) as target:
        old = deploy(target, DeployConfig(bundles["dqn"]), say=lambda _: None)
        assert _use_up_inodes(board / "filler") > 0
        with pytest.raises(DeployError) as err:
            deploy(target, DeployConfig(bundles["lstm"]), say=lambda _: None)
    message = str(err.value)
    assert "out of inodes" in message and "old release is still current" in message, message
    assert "Errno" not in message and "Traceback" not in message
    assert (board / "current").resolve().name == old.release
    assert not list((board / "incoming").glob("*"))


def test_offline_wheelhouse_install_with_this_platforms_wheels(ssh_world, ssh_opts, bundles, tmp_path):
    board = tmp_path / "offline"
    board.mkdir()  # no shared venvs: this board installs its own, from pushed wheels only
    server = ssh_world.servers[1]
    lines = []
    install = InstallConfig(wheelhouse=True, cache=ssh_world.wheel_cache)
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board)) as target:
        result = deploy(target, DeployConfig(bundles["dqn"], install=install), say=lines.append)
    assert any("from the pushed wheelhouse (offline" in line for line in lines)
    # The install is not silent: pip's steps are streamed, and the end is announced.
    assert any("Installing collected packages" in line for line in lines), lines
    assert any("ready in" in line for line in lines)
    wheels = sorted(p.name for p in (board / "wheelhouse").rglob("*.whl"))
    assert any(w.startswith("onnxruntime-") for w in wheels) and any(w.startswith("ale_py-") for w in wheels)
    assert (board / "venvs" / result.venv / ".complete").is_file()
    assert (Path(board) / "current" / ".verified").is_file()


def test_32bit_board_is_told_there_are_no_wheels(tmp_path):
    from deploy.install import download_wheels

    with pytest.raises(DeployError, match="armv7l.*no wheels.*64-bit"):
        download_wheels(["onnxruntime==1.0"], {"machine": "armv7l", "python": "3.11"},
                        InstallConfig(wheelhouse=True, cache=tmp_path), "key")


def test_a_board_whose_card_went_read_only_is_told_so_in_one_line_and_keeps_its_release(ssh_world, bundles,
                                                                                        tmp_path):
    from small_disks import read_only_view

    target = ssh_world.target(ssh_world.servers[0])
    board = tmp_path / "card"
    board.mkdir()
    (board / "venvs").symlink_to(ssh_world.venvs)
    first = ssh_world.cli("deploy", bundles["dqn"], "--to", target, "--board-dir", board, *ssh_world.ssh_flags())
    assert first.returncode == 0, first.stderr
    before = (board / "current").resolve().name
    with read_only_view(board, tmp_path / "card-ro", "the read-only card test") as card:  # a failing SD card
        again = ssh_world.cli("deploy", bundles["stacked"], "--to", target, "--board-dir", card,
                              *ssh_world.ssh_flags())
        lines = again.stderr.strip().splitlines()
        assert again.returncode == 2 and len(lines) == 1, again.stderr
        assert "filesystem is read-only" in lines[0] and "replace the card" in lines[0]
        shown = ssh_world.cli("status", "--on", target, "--board-dir", card, *ssh_world.ssh_flags())
        assert shown.returncode == 0 and f'"current": "{before}"' in shown.stdout, shown.stderr
    assert (board / "current").resolve().name == before
