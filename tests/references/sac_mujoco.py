"""TorchRL's SAC reference: its batched env and its TanhNormal actor (sac/utils.py env_maker,
apply_env_transforms, make_environment, make_sac_agent; config.yaml: HalfCheetah-v4, 8 envs per collector, seed 42).

    edgerl export --from tests/references/sac_mujoco.py:make --out bundle/
"""

from __future__ import annotations

import functools

import torch
from tensordict.nn import InteractionType, TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from torchrl.envs import Compose, DoubleToFloat, EnvCreator, GymEnv, ParallelEnv, TransformedEnv
from torchrl.envs.transforms import InitTracker, RewardSum, StepCounter
from torchrl.modules import MLP, ProbabilisticActor
from torchrl.modules.distributions import TanhNormal

WORKERS = 8
"""The script's env_per_collector."""


def env_maker(name: str = "HalfCheetah-v4") -> GymEnv:
    return GymEnv(name, device="cpu", from_pixels=False, pixels_only=False)


def train_env() -> TransformedEnv:
    """A ParallelEnv of the game, then InitTracker, StepCounter, DoubleToFloat and RewardSum."""
    parallel = ParallelEnv(WORKERS, EnvCreator(functools.partial(env_maker)), serial_for_single=True)
    parallel.set_seed(42)
    return TransformedEnv(parallel, Compose(InitTracker(), StepCounter(1000), DoubleToFloat(), RewardSum()))


def actor(env) -> ProbabilisticActor:  # noqa: ANN001
    """MLP [256, 256] -> loc and a biased-softplus scale -> TanhNormal within the action bounds."""
    spec = env.action_spec_unbatched
    mlp = MLP(num_cells=[256, 256], out_features=2 * spec.shape[-1], activation_class=torch.nn.ReLU)
    net = torch.nn.Sequential(mlp, NormalParamExtractor(scale_mapping="biased_softplus_1.0", scale_lb=1e-4))
    module = TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"])
    return ProbabilisticActor(spec=spec, in_keys=["loc", "scale"], module=module, distribution_class=TanhNormal,
                              distribution_kwargs={"low": spec.space.low, "high": spec.space.high, "tanh_loc": False},
                              default_interaction_type=InteractionType.RANDOM, return_log_prob=False)


def make():
    """(policy, env): the actor initialised on the env's fake TensorDict, as the script does."""
    torch.manual_seed(0)
    env = train_env()
    policy = actor(env)
    with torch.no_grad():
        policy(env.fake_tensordict())
    return policy, env
