"""A sensor policy run as a service: a TorchRL actor holding a cart on a spring at rest, at 50 Hz.

The policy is a plain TorchRL actor, `observation` (position, velocity) in,
a bounded force out: a linear layer set to a PD controller, squashed by tanh
like a motor's limits. The plant is `examples/cart_io.py:Cart`, a cart on a
spring simulated in numpy, standing in for your sensors and motor driver.

    edgerl export --from examples/cart_service.py:make --out build/cart
    python -m device serve build/cart --io examples/cart_io.py:Cart --hz 50 --seconds 10 --status cart.json
    edgerl deploy build/cart --to pi@board --service --io examples/cart_io.py:Cart --hz 50
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

GAINS = (-4.0, -2.5)
"""Force per metre of position and per metre/s of velocity: critically damps Cart's spring."""


def make_policy() -> TensorDictSequential:
    """The controller as a TorchRL actor: linear PD law, tanh-bounded."""
    law = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        law.weight.copy_(torch.tensor([GAINS]))
    return TensorDictSequential(
        TensorDictModule(law, in_keys=["observation"], out_keys=["force"]),
        TensorDictModule(nn.Tanh(), in_keys=["force"], out_keys=["action"]),
    ).select_out_keys("action")


def make() -> tuple[TensorDictSequential, None, TensorDict]:
    """The factory `edgerl export --from` calls: (policy, None, example input)."""
    return make_policy(), None, TensorDict({"observation": torch.zeros(2)}, batch_size=[])
