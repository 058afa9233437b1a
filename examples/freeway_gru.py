"""A user's GRU policy on Freeway, exactly as it was brought (issue 37).

Lazy layers (TorchRL's ConvNet sizes itself at its first call), a GRU between it and an MLP, a Categorical
ProbabilisticActor, the primer appended after the Compose.

It once failed verify (0.8 % of actions): the export copied the policy to rewrite its GRU before the ConvNet had
drawn its weights, so the copy drew others (host.bundle.traceable.materialize). Pinned here as a regression.

    edgerl export --from examples/freeway_gru.py:make --out bundle/
"""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch.distributions import Categorical
from torchrl.envs import Compose, GrayScale, GymEnv, InitTracker, Resize, StepCounter, ToTensorImage, TransformedEnv
from torchrl.modules import MLP, ConvNet, GRUModule, ProbabilisticActor


def make() -> tuple[ProbabilisticActor, TransformedEnv]:
    """The factory `edgerl export --from` calls: (policy, env)."""
    env = TransformedEnv(GymEnv("ALE/Freeway-v5", frame_skip=4, categorical_action_encoding=True),
                         Compose(ToTensorImage(in_keys=["pixels"], out_keys=["img"]), Resize(64, 64, in_keys=["img"]),
                                 GrayScale(in_keys=["img"]), InitTracker(), StepCounter()))
    torch.manual_seed(21)
    enc = TensorDictModule(ConvNet(num_cells=[16, 32], kernel_sizes=[8, 4], strides=[4, 2]),
                           in_keys=["img"], out_keys=["feat"])
    gru = GRUModule(input_size=32 * 6 * 6, hidden_size=64, in_key="feat", out_key="h").make_python_based()
    env.append_transform(gru.make_tensordict_primer())
    head = TensorDictModule(MLP(in_features=64, out_features=env.action_spec.space.n, num_cells=[64]),
                            in_keys=["h"], out_keys=["logits"])
    actor = ProbabilisticActor(TensorDictSequential(enc, gru, head), in_keys=["logits"], spec=env.action_spec,
                               distribution_class=Categorical, return_log_prob=False)
    return actor, env
