"""What a TorchRL user really has reaches the board as TorchRL steps it: transforms in the order the reference
scripts use them, sensor readings in the dtype the sensor gives."""

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs import (
    FrameSkipTransform,
    GymEnv,
    NoopResetEnv,
    TimeMaxPool,
    ToTensorImage,
    TransformedEnv,
    VecNorm,
)

from device import Policy
from device.policy import PolicyError
from host.bundle.export import ExportOptions
from host.bundle.pipeline import export_policy
from host.errors import ExportError


class ToFloat(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()


def test_a_float64_observation_takes_a_float32_reading_but_not_an_integer_one(tmp_path):
    # A sensor declared float64 (what DoubleToFloat leaves at the env's raw side); the board reads float32.
    policy = TensorDictModule(nn.Sequential(ToFloat(), nn.Linear(3, 2)), in_keys=["observation"], out_keys=["action"])
    example = TensorDict(observation=torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64))
    bundle = export_policy(policy, None, tmp_path / "b", example=example, say=lambda _: None,
                           options=ExportOptions(aoti=False, verify_steps=50))
    board = Policy.load(bundle)
    reading = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    assert np.array_equal(board.act(reading), board.act(reading.astype(np.float64)))
    with pytest.raises(PolicyError, match="the manifest says float64"):
        board.act(np.array([1, 2, 3], dtype=np.int64))  # a change of kind is the user's to make, not ours


def test_every_transform_the_board_cannot_take_is_named_at_once_with_what_to_do(tmp_path):
    env = TransformedEnv(GymEnv("ALE/Pong-v5", categorical_action_encoding=True))
    for t in (NoopResetEnv(noops=30), FrameSkipTransform(2), ToTensorImage(), TimeMaxPool(in_keys=["pixels"]),
              VecNorm(in_keys=["pixels"])):
        env.append_transform(t)
    policy = TensorDictModule(nn.Sequential(nn.Flatten(-3), nn.Linear(3 * 210 * 160, 6)), in_keys=["pixels"],
                              out_keys=["action"])
    with pytest.raises(ExportError) as refused:
        export_policy(policy, env, tmp_path / "b", say=lambda _: None, options=ExportOptions(aoti=False))
    message = str(refused.value)
    assert message.startswith("the env has 3 transforms the board cannot take") and "\n" not in message
    for what_to_do in ("set frame_skip on the GymEnv", "drop it and retrain", "step the env"):
        assert what_to_do in message
    assert "NoopResetEnv" not in message  # training's no-op starts are dropped, not refused
    assert not (tmp_path / "b").exists()  # refused before anything was written


def test_a_factory_imports_its_sibling_module_as_the_reference_scripts_do(tmp_path):
    from host.bundle.sources import load_factory

    (tmp_path / "utils_mine.py").write_text(
        "import torch\nfrom tensordict import TensorDict\nfrom tensordict.nn import TensorDictModule\n"
        "def make_policy():\n"
        "    return TensorDictModule(torch.nn.Linear(3, 2), in_keys=['observation'], out_keys=['action'])\n")
    (tmp_path / "train_mine.py").write_text(
        "from tensordict import TensorDict\nimport torch\nfrom utils_mine import make_policy\n"
        "def make():\n    return make_policy(), None, TensorDict(observation=torch.zeros(3))\n")
    made = load_factory(f"{tmp_path / 'train_mine.py'}:make")
    assert type(made.policy).__module__.startswith("tensordict") and made.label == "train-mine"
    import sys

    assert sys.modules["train_mine"].__file__ == str(tmp_path / "train_mine.py")  # its own name: workers import it
