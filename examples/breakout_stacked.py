"""A policy edgerl has never seen: Breakout, 3 stacked 64x64 frames, one-hot actions, a small residual CNN.

Nothing here is edgerl's: the network, the frame size, the stack (TorchRL's
`CatFrames` with its default "same" padding), the one-hot action spec and
the bookkeeping transforms are a user's choices. edgerl reads them all from
the env and the module.

    edgerl export --from examples/breakout_stacked.py:make --out bundle/
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchrl.envs import (
    CatFrames,
    Compose,
    GrayScale,
    GymEnv,
    Resize,
    RewardSum,
    StepCounter,
    ToTensorImage,
    TransformedEnv,
)
from torchrl.modules import QValueActor


class ResidualQNet(nn.Module):
    """Two strided convolutions, a residual block, global average pooling, a linear head."""

    def __init__(self, in_channels: int, n_actions: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 5, stride=2), nn.ELU(),
                                  nn.Conv2d(16, 32, 3, stride=2), nn.ELU())
        self.block = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ELU(), nn.Conv2d(32, 32, 3, padding=1))
        self.head = nn.Sequential(nn.LayerNorm(32), nn.Linear(32, n_actions))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Q-values of the stacked frames."""
        x = self.stem(frames)
        x = torch.relu(x + self.block(x))
        return self.head(x.mean(dim=(-2, -1)))


def make_env() -> TransformedEnv:
    """Breakout with v5 semantics and one-hot actions, preprocessed and stacked by transforms."""
    env = GymEnv("ALE/Breakout-v5", frame_skip=4, categorical_action_encoding=False)
    return TransformedEnv(env, Compose(
        ToTensorImage(in_keys=["pixels"], out_keys=["obs"]),
        Resize(64, 64, in_keys=["obs"]),
        GrayScale(in_keys=["obs"]),
        CatFrames(N=3, dim=-3, in_keys=["obs"]),
        RewardSum(),
        StepCounter(),
    ))


def make() -> tuple[QValueActor, TransformedEnv]:
    """The factory `edgerl export --from` calls: (policy, env)."""
    torch.manual_seed(3)
    env = make_env()
    net = ResidualQNet(3, env.action_spec.shape[-1])
    return QValueActor(net, in_keys=["obs"], spec=env.action_spec), env


def main() -> None:
    """Export, verify, deploy to a local board, self-test and play there."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
    from examples._pipeline import example_args, run_pipeline

    args = example_args(__doc__, "build/breakout-stacked")
    run_pipeline(f"{__file__}:make", args.out, aoti=args.aoti, play_steps=300)


if __name__ == "__main__":
    main()
