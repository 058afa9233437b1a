"""TorchRL's Atari DQN reference: its env and its Q network (dqn/utils_atari.py make_dqn_modules_pixels).

    edgerl export --from tests/references/dqn_atari.py:make --out bundle/
"""

from __future__ import annotations

import torch
from atari_envs import dqn_env
from torchrl.data import Composite
from torchrl.modules import MLP, ConvNet, QValueActor

WARM_STEPS = 64
"""Steps taken before export, as training would have: VecNorm's statistics come from them."""


def q_network(env) -> QValueActor:  # noqa: ANN001
    """ConvNet [32, 64, 64] / [8, 4, 3] / [4, 2, 1], then an MLP of 512 to the action values."""
    spec = env.specs["input_spec", "full_action_spec", "action"]
    cnn = ConvNet(activation_class=torch.nn.ReLU, num_cells=[32, 64, 64], kernel_sizes=[8, 4, 3], strides=[4, 2, 1])
    features = cnn(torch.ones(env.observation_spec["pixels"].shape)).shape[-1]
    mlp = MLP(in_features=features, activation_class=torch.nn.ReLU, out_features=spec.space.n, num_cells=[512])
    return QValueActor(module=torch.nn.Sequential(cnn, mlp), spec=Composite(action=spec), in_keys=["pixels"])


def make():
    """(policy, env): the env warmed by a short random rollout."""
    torch.manual_seed(0)
    env = dqn_env()
    env.rollout(WARM_STEPS)
    return q_network(env), env
