"""A recurrent pixel policy edgerl has never seen: Boxing, one 84x84 frame, a GRU carrying memory between steps.

The user's choices throughout: TorchRL's python-based `GRUModule` between a
ConvNet and an MLP head, its primer and `InitTracker` on the env (so
`is_init` resets the hidden state at every episode start), a Q-value head.
TorchRL's GRUModule zeroes the hidden state behind a data-dependent
`if is_init.any()`, which torch.export cannot capture; edgerl exports it
through an equivalent step without the branch (host.bundle.traceable).

    edgerl export --from examples/boxing_gru.py:make --out bundle/
"""

from __future__ import annotations

from pathlib import Path

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.envs import Compose, GrayScale, GymEnv, InitTracker, Resize, StepCounter, ToTensorImage, TransformedEnv
from torchrl.modules import MLP, ConvNet, GRUModule, QValueModule

HIDDEN = 64


def make() -> tuple[TensorDictSequential, TransformedEnv]:
    """The factory `edgerl export --from` calls: (policy, env)."""
    torch.manual_seed(5)
    env = TransformedEnv(GymEnv("ALE/Boxing-v5", frame_skip=4, categorical_action_encoding=True), Compose(
        ToTensorImage(in_keys=["pixels"], out_keys=["frame"]),
        Resize(84, 84, in_keys=["frame"]),
        GrayScale(in_keys=["frame"]),
        InitTracker(),
        StepCounter(),
    ))
    conv = ConvNet(num_cells=[16, 32], kernel_sizes=[8, 4], strides=[4, 2], activation_class=nn.ReLU)
    conv(torch.zeros(1, 84, 84))
    gru = GRUModule(input_size=32 * 9 * 9, hidden_size=HIDDEN, in_keys=["embed", "memory"],
                    out_keys=["embed_gru", ("next", "memory")]).make_python_based()
    env.append_transform(gru.make_tensordict_primer())
    head = MLP(in_features=HIDDEN, out_features=env.action_spec.space.n, num_cells=[64])
    policy = TensorDictSequential(
        TensorDictModule(conv, in_keys=["frame"], out_keys=["embed"]),
        gru,
        TensorDictModule(head, in_keys=["embed_gru"], out_keys=["action_value"]),
        QValueModule(spec=env.action_spec),
    )
    return policy, env


def main() -> None:
    """Export, verify, deploy to a local board, self-test and play there."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
    from examples._pipeline import example_args, run_pipeline

    args = example_args(__doc__, "build/boxing-gru")
    run_pipeline(f"{__file__}:make", args.out, aoti=args.aoti, play_steps=300)


if __name__ == "__main__":
    main()
