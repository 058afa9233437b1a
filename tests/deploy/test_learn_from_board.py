"""A user learns from a board: the teacher's decisions recorded there, pulled home over a link that breaks once,
loaded as TorchRL data, distilled into a student, exported, and deployed back to the board, where it holds the
cart as the teacher did (examples/learn_from_board.py, the sensor bundle's fast variant)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import in_process
import pytest
import torch

from deploy.link.ssh import SshTarget
from deploy.link.targets import DeployError
from deploy.pull import PullConfig, pull
from deploy.release import DeployConfig, deploy
from device.manifest import INT8_FILE, load_bundle
from host.bundle.export import ExportOptions
from host.data import load_episodes
from host.data.shards import read_recording_index
from host.policies import PolicyConfig, build_env

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


def test_a_pong_student_learns_the_teachers_games_recorded_by_edgerl_run_and_goes_back_to_the_board(
        ssh_world, tmp_path):
    board, env = tmp_path / "board", ssh_world.env()
    board.mkdir()
    (board / "venvs").symlink_to(ssh_world.venvs)
    target = f"local:{board}"

    def edgerl(*args: object) -> str:
        done = in_process.edgerl(*args, env=env, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    edgerl("deploy", "models/pong", "--to", target)
    edgerl("run", "--on", target, "--max-steps", 300, "--seed", 5, "--record", "pong", "--reports", tmp_path / "r")
    edgerl("data", "pull", "--on", target, "--out", tmp_path / "data")
    teacher = load_bundle(REPO / "models" / "pong")
    game_env = build_env(PolicyConfig(network=teacher.policy_kind), teacher.env)
    learn = example()
    recording = next((tmp_path / "data").iterdir()) / "pong"
    student, figures = learn.fit_game(recording, game_env, steps=150, scratch=tmp_path / "memmap",
                                      say=lambda _: None)
    assert figures["decisions"] == 300 and figures["parameters"] < 400_000  # the teacher has 1.7 M
    recorded = load_episodes(recording, game_env, keys=["action", "pixels"])
    commonest = recorded["action"].bincount().max().item() / 300
    # DAgger's relabelling, held to what the board did: the teacher on the regenerated screens chooses as it did there.
    # The board ran the model its self-test timed faster (int8 on a CPU with dot-product instructions): so does
    # the teacher here, as the recording names it.
    (run,) = read_recording_index(recording)["runs"].values()
    int8 = run["model_file"] == INT8_FILE
    relabelled = learn.teacher_labels(REPO / "models" / "pong", int8=int8)(recorded.clone())
    assert torch.equal(relabelled["action"], recorded["action"])
    assert figures["agreement"] > commonest + 0.25, (figures, commonest)  # it reads the screen, not the prior
    bundle = learn.export_policy(student, game_env, tmp_path / "student", say=lambda _: None,
                                 options=ExportOptions(verify_steps=100, label="stacked-student"))
    edgerl("deploy", bundle, "--to", target)
    played = edgerl("run", "--on", target, "--max-steps", 100, "--reports", tmp_path / "r2")
    assert "stacked-student-" in json.loads(edgerl("status", "--on", target))["current"]
    assert "steps/s" in played
