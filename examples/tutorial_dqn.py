"""TorchRL's export tutorial, its DQN on Pong, through edgerl.

The env and the policy are the tutorial's, line for line where it matters:
`ToTensorImage`, `Resize(84, nearest)`, `GrayScale`, `StepCounter` on
`ALE/Pong-v5` with categorical actions, a `QValueActor` over
`ConvNet.default_atari_dqn` and an `EGreedyModule` (eps 0.5). The tutorial
trains for a short while first; `--train-frames` does the same at a toy
budget (the test suite uses 64).

    edgerl export --from examples/tutorial_dqn.py:make --out bundle/
    python examples/tutorial_dqn.py --out build/tutorial-dqn     # export, verify, deploy locally, self-test, play
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from tensordict.nn import TensorDictSequential as Seq
from torchrl.envs import Compose, GrayScale, GymEnv, Resize, StepCounter, ToTensorImage, TransformedEnv
from torchrl.modules import ConvNet, EGreedyModule, QValueActor


def make_env() -> TransformedEnv:
    """The tutorial's env: raw Pong screens, preprocessed by transforms."""
    return TransformedEnv(
        GymEnv("ALE/Pong-v5", categorical_action_encoding=True),
        Compose(ToTensorImage(), Resize(84, interpolation="nearest"), GrayScale(), StepCounter()),
    )


def train(policy: Seq, env: TransformedEnv, frames: int) -> None:
    """The tutorial's DQN update (DQNLoss, SoftUpdate, replay buffer) at a toy budget."""
    from torchrl.collectors import Collector  # the tutorial's SyncDataCollector, renamed in torchrl 0.14
    from torchrl.data import LazyTensorStorage, ReplayBuffer
    from torchrl.objectives import DQNLoss, SoftUpdate

    collector = Collector(env, policy, frames_per_batch=32, total_frames=frames)
    rb = ReplayBuffer(storage=LazyTensorStorage(10_000))
    loss = DQNLoss(value_network=policy[0], action_space=env.action_spec, delay_value=True)
    optim = torch.optim.Adam(loss.parameters())
    updater = SoftUpdate(loss, eps=0.99)
    for data in collector:
        rb.extend(data)
        loss_vals = loss(rb.sample(32))
        loss_vals["loss"].backward()
        optim.step()
        optim.zero_grad()
        updater.step()
    collector.shutdown()


def make() -> tuple[Seq, TransformedEnv]:
    """The factory `edgerl export --from` calls: (policy, env)."""
    torch.manual_seed(0)
    env = make_env()
    value_net = ConvNet.default_atari_dqn(num_actions=env.action_spec.space.n)
    actor = QValueActor(value_net, in_keys=["pixels"], spec=env.action_spec)
    policy = Seq(actor, EGreedyModule(env.action_spec, annealing_num_steps=100_000, eps_init=0.5))
    env.rollout(3, policy)  # materialises the lazy layers, as the tutorial's first collection does
    frames = int(os.environ.get("EDGERL_TUTORIAL_FRAMES", "0"))
    if frames:
        train(policy, env, frames)
    return policy, env


def main() -> None:
    """Export, verify, deploy to a local board, self-test and play there."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
    from examples._pipeline import example_args, run_pipeline

    parser = argparse.ArgumentParser()
    parser.add_argument("--train-frames", type=int, default=0, help="toy DQN training first (default none)")
    args = example_args(__doc__, "build/tutorial-dqn", parser)
    os.environ["EDGERL_TUTORIAL_FRAMES"] = str(args.train_frames)
    run_pipeline(f"{__file__}:make", args.out, aoti=args.aoti, play_steps=300)


if __name__ == "__main__":
    main()
