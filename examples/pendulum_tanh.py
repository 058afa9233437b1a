"""A continuous-action policy as TorchRL's PPO/SAC recipes build it: VecNorm on the observation, a TanhNormal actor.

The env normalises its observation with `VecNorm` (running statistics,
warmed up here on 500 random steps and then frozen, as a recipe's eval env
is); the actor is a `ProbabilisticActor` with a `TanhNormal` bounded by the
env's action spec (Pendulum's torque, [-2, 2]). edgerl bakes VecNorm's
current statistics into the graph as the affine map it applies, records
them and the action's bounds in the manifest, and on the board
`Policy.act` refuses any action outside [-2, 2].

    edgerl export --from examples/pendulum_tanh.py:make --out bundle/
"""

from __future__ import annotations

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.envs import Compose, GymEnv, StepCounter, TransformedEnv, VecNormV2
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal


def make_env() -> TransformedEnv:
    """Pendulum with its observation normalised by VecNorm, statistics warmed up and frozen."""
    env = TransformedEnv(GymEnv("Pendulum-v1"), Compose(VecNormV2(in_keys=["observation"]), StepCounter()))
    env.set_seed(0)
    env.rollout(500, break_when_any_done=False)
    env.transform[0].freeze()
    return env


def make() -> tuple[ProbabilisticActor, TransformedEnv]:
    """The factory `edgerl export --from` calls: (policy, env)."""
    torch.manual_seed(2)
    env = make_env()
    net = nn.Sequential(MLP(in_features=3, out_features=2, num_cells=[64, 64], activation_class=nn.Tanh),
                        NormalParamExtractor())
    actor = ProbabilisticActor(TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
                               in_keys=["loc", "scale"], spec=env.action_spec, distribution_class=TanhNormal,
                               distribution_kwargs={"low": env.action_spec.space.low,
                                                    "high": env.action_spec.space.high})
    return actor, env
