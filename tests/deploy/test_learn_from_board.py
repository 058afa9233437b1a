"""A user learns from a board: the teacher's decisions recorded there, pulled home over a link that breaks once,
loaded as TorchRL data, distilled into a student, exported, and deployed back to the board, where it holds the
cart as the teacher did (examples/learn_from_board.py, the sensor bundle's fast variant)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.link.ssh import SshTarget
from deploy.link.targets import DeployError
from deploy.pull import PullConfig, pull
from deploy.release import DeployConfig, deploy

REPO = Path(__file__).resolve().parents[2]


def example():
    spec = importlib.util.spec_from_file_location("learn_from_board", REPO / "examples" / "learn_from_board.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve_cart(bundle: Path, *args: object) -> dict:
    status = Path(str(bundle) + "-status.json")
    done = subprocess.run([sys.executable, "-m", "device", "serve", str(bundle), "--io", "examples/cart_io.py:Cart",
                           "--hz", "50", "--status", str(status), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(status.read_text())


def test_a_student_distilled_from_the_boards_recording_holds_the_cart_after_its_deploy(
        cart_bundle, ssh_world, ssh_opts, board_dir, tmp_path):
    board = board_dir()
    for _ in range(2):  # two runs of the teacher on the board: two shards, so the link can break between them
        serve_cart(cart_bundle, "--seconds", 2, "--record", board / "data" / "cart")
    server, pulled = ssh_world.servers[0], tmp_path / "pulled"
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board, retries=0)) as target:
        real_get = target.get

        def get_then_cut(remote, local):
            real_get(remote, local)
            target.client.get_transport().close()  # the link drops after the first shard

        target.get = get_then_cut
        with pytest.raises(DeployError):
            pull(target, "pi", PullConfig(pulled), say=lambda _: None)
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board)) as target:
        rerun = pull(target, "pi", PullConfig(pulled), say=lambda _: None)
        assert (rerun.fetched, rerun.already) == (1, 1)
        learn = example()
        student, example_input, figures = learn.fit(pulled / "pi" / "cart", seed=0, scratch=tmp_path / "memmap")
        assert figures["decisions"] >= 190 and figures["mse"] < 1e-3, figures
        bundle = learn.export_policy(student, None, tmp_path / "student", example=example_input, say=lambda _: None)
        deployed = deploy(target, DeployConfig(bundle), say=lambda _: None)
    status = serve_cart(board / "current", "--seconds", 4)  # the board's current release: the student
    assert status["release"] == deployed.release
    assert abs(status["io_status"]["position_m"]) < 0.1, status["io_status"]  # the cart starts 1 m off rest
