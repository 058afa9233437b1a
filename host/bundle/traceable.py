"""TorchRL modules rewritten for export: the same step, without a branch on data.

torch.export cannot capture a Python `if` on a tensor's value. Two TorchRL
modules have one on their single-step path:

- `GRUModule.forward` zeroes the hidden state only
`if not self.recurrent_mode and is_init.any()`: a Python branch on a tensor's
value, which torch.export cannot capture. Zeroing with
`where(is_init, 0, hidden)` unconditionally is the same function (it leaves
the state untouched where no episode starts), and is what TorchRL's own
`LSTMModule` does. `traceable(policy)` returns a copy of the policy with each
GRUModule replaced by `SteppedGRU`, which takes one step exactly as
GRUModule does outside recurrent mode: the same reshaping of the
TensorDict, the same reset, the same `_gru` call. The user's policy is not
touched; verify compares the export with it, step by step through episode
starts.
- `DistributionalQValueModule` (C51) checks `if (log_softmax_values > 0).any(): raise` before taking
  the expected value over its support. The check validates input and
  computes nothing; the twin takes the same expected value without it.
"""

from __future__ import annotations

import copy
import types

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import expand_as_right
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torchrl.modules import GRUModule
from torchrl.modules.tensordict_module.actors import DistributionalQValueModule

from host.errors import ExportError


class SteppedGRU(TensorDictModuleBase):
    """One step of a GRUModule outside recurrent mode, its is_init reset unconditional."""

    def __init__(self, gru: GRUModule) -> None:
        super().__init__()
        self.gru = gru
        self.in_keys, self.out_keys = list(gru.in_keys), list(gru.out_keys)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Read the input and hidden state, reset where is_init, step, write the output and next state."""
        shape = tensordict.shape
        shaped = tensordict.reshape(-1).unsqueeze(-1)  # [B, T=1], as GRUModule shapes a step
        is_init = shaped.get("is_init").squeeze(-1)
        value = shaped.get(self.in_keys[0])
        hidden = shaped.get(self.in_keys[1], None)
        if hidden is not None:
            hidden = torch.where(expand_as_right(is_init, hidden), 0, hidden)
        batch, steps = value.shape[:2]
        out, hidden = self.gru._gru(value, batch, steps, value.device, value.dtype, hidden, None, is_init=None,
                                    backend="pad")
        shaped.set(self.out_keys[0], out)
        shaped.set(self.out_keys[1], hidden)
        tensordict.update(shaped.reshape(shape))
        return tensordict


def _expected_value(self: DistributionalQValueModule, log_softmax_values: torch.Tensor,
                    support: torch.Tensor | None = None) -> torch.Tensor:
    """DistributionalQValueModule._support_expected without its data-dependent validity check."""
    support = (self.support if support is None else support).to(log_softmax_values.device)
    return (log_softmax_values.exp() * support.unsqueeze(-1)).sum(-2)


_REWRITTEN = (GRUModule, DistributionalQValueModule)


def _replace(module: nn.Module) -> int:
    count = 0
    for name, child in module.named_children():
        if isinstance(child, DistributionalQValueModule):
            # Its action functions are bound methods that call self._support_expected: an instance
            # attribute takes their place.
            child._support_expected = types.MethodType(_expected_value, child)
            count += 1
            continue
        if isinstance(child, GRUModule):
            if child.recurrent_mode:
                raise ExportError("the policy's GRUModule is in recurrent mode; export the step-by-step policy "
                                  "(default_recurrent_mode=False), which is what acts on a board")
            setattr(module, name, SteppedGRU(child))
            count += 1
        else:
            count += _replace(child)
    return count


def materialize(policy: TensorDictModuleBase, chain: TensorDictModuleBase, example: TensorDictBase) -> None:
    """Give a policy's lazy layers their weights, by one step on the example, before `traceable` copies it.

    Lazy layers are LazyConv2d and LazyLinear: TorchRL's ConvNet and MLP without in_features. A copy made while
    they are still uninitialized draws its own weights at its first call: the export then holds another network
    than the user's, wrong from the first step (a GRU policy on Freeway agreed with its eager self on 0.8 % of
    actions; only a policy with a module rewritten here is copied, so only it was hit).
    """
    if any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params() for m in policy.modules()):
        with torch.no_grad():
            chain(example.clone())


def traceable(policy: TensorDictModuleBase) -> TensorDictModuleBase:
    """The policy itself when it holds none of these modules, else a copy with each rewritten."""
    if not any(isinstance(m, _REWRITTEN) for m in policy.modules()):
        return policy
    twin = copy.deepcopy(policy)
    holder = nn.ModuleDict({"policy": twin})  # so a top-level module is replaced like any child
    _replace(holder)
    return holder["policy"]
