"""Another policy edgerl has never seen: a PPO-style categorical actor on Space Invaders.

The full 18-action set, no sticky actions, a frame skip of 3, a fixed
`ObservationNorm`, a zero-padded 2-frame `CatFrames` on colour frames, one-hot
actions and a `ProbabilisticActor` (deterministic export = the mode of the
distribution; stochastic export = a draw inside the graph).

    edgerl export --from examples/invaders_actor.py:make --out bundle/
"""

from __future__ import annotations

from pathlib import Path

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs import CatFrames, Compose, GymEnv, ObservationNorm, Resize, StepCounter, ToTensorImage, TransformedEnv
from torchrl.modules import OneHotCategorical, ProbabilisticActor


def make_env() -> TransformedEnv:
    """Space Invaders, full action set, no sticky actions, colour 72x72 frames, two stacked."""
    env = GymEnv("ALE/SpaceInvaders-v5", frame_skip=3, repeat_action_probability=0.0, full_action_space=True,
                 categorical_action_encoding=False)
    return TransformedEnv(env, Compose(
        ToTensorImage(in_keys=["pixels"], out_keys=["screen"]),
        Resize(72, 72, in_keys=["screen"], interpolation="bilinear"),
        ObservationNorm(loc=0.5, scale=4.0, in_keys=["screen"]),
        CatFrames(N=2, dim=-3, in_keys=["screen"], padding="constant"),
        StepCounter(),
    ))


def make() -> tuple[ProbabilisticActor, TransformedEnv]:
    """The factory `edgerl export --from` calls: (policy, env)."""
    torch.manual_seed(5)
    env = make_env()
    n_actions = env.action_spec.shape[-1]
    net = nn.Sequential(nn.Conv2d(6, 24, 6, stride=3), nn.SiLU(), nn.Conv2d(24, 48, 4, stride=2), nn.SiLU(),
                        nn.MaxPool2d(2), nn.Flatten(-3), nn.Linear(48 * 25, 128), nn.Tanh(),
                        nn.Linear(128, n_actions))
    module = TensorDictModule(net, in_keys=["screen"], out_keys=["logits"])
    return ProbabilisticActor(module, in_keys=["logits"], spec=env.action_spec,
                              distribution_class=OneHotCategorical, return_log_prob=False), env


def main() -> None:
    """Export, verify, deploy to a local board, self-test and play there."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
    from examples._pipeline import example_args, run_pipeline

    args = example_args(__doc__, "build/invaders-actor")
    run_pipeline(f"{__file__}:make", args.out, aoti=args.aoti, play_steps=300)


if __name__ == "__main__":
    main()
