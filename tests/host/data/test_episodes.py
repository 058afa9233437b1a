"""A board's recorded games and plant runs come back to the host as TorchRL data, checked against what the board saw."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.envs import ExplorationType, InitTracker, Resize, StepCounter, set_exploration_type
from torchrl.modules import GRUModule, set_recurrent_mode

from device.manifest import load_bundle
from device.record import INDEX, shard_bytes
from host.data import DataError, load_episodes, replay_buffer
from host.envs import make_env
from host.policies import PolicyConfig, build_policy

REPO = Path(__file__).resolve().parents[3]
PONG = REPO / "models" / "pong"


def device(*args: object) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "device", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done


def trained_env():
    """The env the shipped policy plays in, as a user's TorchRL env: the game's screen transforms and two more."""
    env = make_env(load_bundle(PONG).env)
    env.append_transform(StepCounter())
    env.append_transform(InitTracker())
    return env


@pytest.fixture(scope="module")
def recorded_pong(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("pong") / "rec"
    report = tmp_path_factory.mktemp("pong") / "report.json"
    # Two games cut at 700 decisions (a whole game is ~2,000): the second starts after the board's own reset, from
    # the emulator state (its sticky-action RNG) the first left, as on the board.
    device("play", PONG, "--record", folder, "--episodes", 2, "--max-steps", 700, "--seed", 7, "--report", report)
    return folder, json.loads(report.read_text())


def test_a_recorded_pong_game_loads_as_the_envs_own_rollout_bit_for_bit(recorded_pong):
    folder, report = recorded_pong
    assert report["env"]["repeat_action_probability"] == 0.25  # sticky actions: the emulator's RNG matters
    loaded = load_episodes(folder, trained_env())
    # TorchRL's own rollout, with the board's seed and the board's actions, episode after episode.
    env = trained_env()
    env.set_seed(7)
    expected = []
    for episode in report["episodes"]:
        actions = iter(bytes.fromhex(episode["actions_hex"]))
        replay = TensorDictModule(lambda actions=actions: torch.tensor(next(actions)), in_keys=[], out_keys=["action"])
        expected.append(env.rollout(episode["steps"], policy=replay))
    expected = torch.cat(expected)
    keys = set(expected.keys(True, True))
    assert keys <= set(loaded.keys(True, True)) and {("next", "pixels_trsf"), "is_init", "step_count"} <= keys
    for key in keys:
        assert torch.equal(loaded[key], expected[key]), key
    assert loaded.shape[0] == sum(e["steps"] for e in report["episodes"])
    scores = [loaded["next", "reward"][loaded["collector", "traj_ids"] == n].sum().item() for n in (0, 1)]
    assert scores == [e["score"] for e in report["episodes"]]


def test_a_recurrent_policys_recorded_game_loads_with_its_state_as_its_own_rollout_would(bundles, tmp_path):
    folder, report = tmp_path / "rec", tmp_path / "report.json"
    device("play", bundles["lstm"], "--record", folder, "--max-steps", 80, "--seed", 3, "--report", report)
    # The TorchRL policy the bundle was exported from (an untrained LSTM, seed 0), and the env it acts in.
    built = build_policy(PolicyConfig(network="lstm"), load_bundle(bundles["lstm"]).env)
    loaded = load_episodes(folder, built.env, policy=built.actor)
    env = build_policy(PolicyConfig(network="lstm"), load_bundle(bundles["lstm"]).env).env
    env.set_seed(3)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        expected = env.rollout(80, policy=built.actor)
    keys = set(expected.keys(True, True))
    assert {"recurrent_state_h", ("next", "recurrent_state_c"), "action_value", "is_init"} <= keys
    assert expected["next", "recurrent_state_h"].abs().sum() > 0  # a state that moved, not the primer's zeros
    for key in keys:
        assert torch.equal(loaded[key], expected[key]), key
    # The board's own actions, kept: what its ONNX model chose, step for step.
    played = json.loads(report.read_text())["episodes"][0]
    assert loaded["action"].tolist() == list(bytes.fromhex(played["actions_hex"]))
    # The same game behind another Resize: same screens, other frames than the board's policy read. Refused.
    other = build_policy(PolicyConfig(network="lstm"), load_bundle(bundles["lstm"]).env).env
    other.transform.insert(2, Resize(64, 64, in_keys=["pixels_trsf"]))  # after its own Resize(84, 84)
    with pytest.raises(DataError, match=r"run \S+: the env given makes pixels_trsf of shape \[1, 64, 64\], but the "
                                        r"bundle's policy was exported reading pixels_trsf of shape \[1, 84, 84\]"):
        load_episodes(folder, other)


def _rewrite_first_shard(folder: Path, change, fix_sum: bool) -> None:
    index = json.loads((folder / INDEX).read_text())
    shard = index["shards"][0]
    with np.load(folder / shard["file"]) as npz:
        columns = {k: npz[k] for k in npz.files}
    change(columns)
    data = shard_bytes(columns)
    (folder / shard["file"]).write_bytes(data)
    if fix_sum:
        shard["sha256"] = hashlib.sha256(data).hexdigest()
        (folder / INDEX).write_text(json.dumps(index))


def test_a_recording_that_is_not_what_the_board_played_is_refused_in_one_line(recorded_pong, tmp_path):
    folder = tmp_path / "rec"
    subprocess.run(["cp", "-r", str(recorded_pong[0]), str(folder)], check=True)

    def other_actions(columns):  # the paddle driven up for 20 steps where the board drove it otherwise
        columns["action"][40:60] = np.where(columns["action"][40:60] == 2, 3, 2)

    _rewrite_first_shard(folder, other_actions, fix_sum=False)
    with pytest.raises(DataError, match="does not match its sha256"):
        load_episodes(folder, trained_env())
    _rewrite_first_shard(folder, lambda columns: None, fix_sum=True)  # sums redone: the game itself is judged
    with pytest.raises(DataError, match=r"episode 0: the screens differ from step (4\d|5\d|6\d)"):
        load_episodes(folder, trained_env())


def test_a_plant_run_loads_as_transitions_and_fills_a_replay_buffer(cart_bundle, tmp_path):
    folder = tmp_path / "rec"
    device("serve", cart_bundle, "--io", "examples/cart_io.py:Cart", "--hz", 50, "--seconds", 2, "--record", folder)
    data = load_episodes(folder)
    assert data.shape[0] >= 90 and data["observation"].shape[1:] == (2,) and data["action"].shape[1:] == (1,)
    # Each transition's next observation is the decision after it; the reward is the plant's outcome() for it.
    assert torch.equal(data["next", "observation"][:-1], data["observation"][1:])
    assert torch.allclose(data["next", "reward"].squeeze(-1), -data["next", "observation"][:, 0].abs(), atol=1e-6)
    assert data["is_init"][0].item() and not data["is_init"][1:].any() and not data["next", "done"].any()
    buffer = replay_buffer(folder, scratch_dir=tmp_path / "memmap")
    assert len(buffer) == data.shape[0] and buffer.sample()["action"].shape == (256, 1)


def test_a_recurrent_policy_run_along_a_plant_recording_carries_its_state_as_torchrl_does_over_the_sequence(
        cart_bundle, tmp_path):
    folder = tmp_path / "rec"
    for _ in range(2):  # two runs: the second starts from zeros again, at its is_init
        device("serve", cart_bundle, "--io", "examples/cart_io.py:Cart", "--hz", 50, "--seconds", 1, "--record", folder)
    torch.manual_seed(0)
    gru = GRUModule(input_size=2, hidden_size=8, in_keys=["observation", "h"],
                    out_keys=["feat", ("next", "h")]).make_python_based()
    policy = TensorDictSequential(gru, TensorDictModule(nn.Linear(8, 1), ["feat"], ["action"]))
    loaded = load_episodes(folder, policy=policy)
    assert loaded["is_init"].sum() == 2 and loaded["next", "h"].abs().sum() > 0
    # TorchRL's recurrent mode runs the GRU over the whole sequence in one call, reset where is_init: the same states.
    with set_recurrent_mode(True), torch.no_grad():
        whole = policy(loaded.select("observation", "is_init").clone().unsqueeze(0))
    # (Its output at each step; of the state it keeps the last. A one-layer GRU's output is its state.)
    assert torch.allclose(whole["feat"][0], loaded["feat"], atol=1e-6)
    assert torch.allclose(loaded["feat"], loaded["next", "h"][:, 0], atol=1e-6)
    assert torch.allclose(whole["next", "h"][0, -1], loaded["next", "h"][-1], atol=1e-6)
    assert torch.equal(loaded["h"][1:][~loaded["is_init"][1:, 0]], loaded["next", "h"][:-1][~loaded["is_init"][1:, 0]])
    assert torch.equal(loaded["action"], load_episodes(folder)["action"])  # the board's actions, kept


def test_a_folder_that_is_not_one_recording_is_named_in_one_line(tmp_path):
    # What a user mistypes: a path that is not there, a file, the board's folder (or data/) above its recordings.
    with pytest.raises(DataError, match=r"no-such does not exist: give a recording's folder"):
        load_episodes(tmp_path / "no-such")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        replay_buffer(tmp_path / "a_file")
    for name in ("pi/day1", "pi/serve1"):
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / INDEX).write_text("{}")
    with pytest.raises(DataError, match=r"pi holds the recordings day1, serve1: pass one of them, e\.g\. .*pi/day1"):
        load_episodes(tmp_path / "data" / "pi")
    with pytest.raises(DataError, match=r"data holds the recordings pi/day1, pi/serve1"):
        load_episodes(tmp_path / "data")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no recording"):
        load_episodes(tmp_path / "empty")
