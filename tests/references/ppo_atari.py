"""TorchRL's Atari PPO reference: its batched env and its actor (ppo/utils_atari.py make_ppo_modules_pixels).

    edgerl export --from tests/references/ppo_atari.py:make --out bundle/
"""

from __future__ import annotations

import torch
from atari_envs import ppo_env
from tensordict.nn import TensorDictModule
from torchrl.envs import ExplorationType
from torchrl.modules import MLP, ActorValueOperator, ConvNet, ProbabilisticActor, ValueOperator

WARM_STEPS = 64


def actor_critic(env) -> ActorValueOperator:  # noqa: ANN001
    """A shared ConvNet + MLP(512) trunk, a Categorical policy head over logits, and a value head."""
    shape = env.observation_spec["pixels"].shape[-3:]
    cnn = ConvNet(activation_class=torch.nn.ReLU, num_cells=[32, 64, 64], kernel_sizes=[8, 4, 3], strides=[4, 2, 1])
    features = cnn(torch.ones(shape)).shape[-1]
    trunk = MLP(in_features=features, activation_class=torch.nn.ReLU, activate_last_layer=True, out_features=512,
                num_cells=[])
    common = TensorDictModule(torch.nn.Sequential(cnn, trunk), in_keys=["pixels"], out_keys=["common_features"])
    n = env.action_spec_unbatched.space.n
    head = TensorDictModule(MLP(in_features=512, out_features=n, activation_class=torch.nn.ReLU, num_cells=[]),
                            in_keys=["common_features"], out_keys=["logits"])
    policy = ProbabilisticActor(head, in_keys=["logits"], spec=env.full_action_spec_unbatched,
                                distribution_class=torch.distributions.Categorical, return_log_prob=True,
                                default_interaction_type=ExplorationType.RANDOM)
    value = ValueOperator(MLP(in_features=512, out_features=1, activation_class=torch.nn.ReLU, num_cells=[]),
                          in_keys=["common_features"])
    return ActorValueOperator(common_operator=common, policy_operator=policy, value_operator=value)


def make():
    """(policy, env): the actor of the actor-critic, the batched env warmed by a short rollout."""
    torch.manual_seed(0)
    env = ppo_env(1)
    model = actor_critic(env)
    with torch.no_grad():
        model(env.fake_tensordict().expand(10))  # the script's lazy-init pass
    env.rollout(WARM_STEPS)
    return model.get_policy_operator(), env
