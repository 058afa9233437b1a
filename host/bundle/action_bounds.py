"""The action's kind and bounds for the manifest, read from the env's action spec (or the actor's own spec).

A board that drives a motor must know the range it may command; the
manifest carries it so `device.Policy.act` can refuse (or, when asked, clip)
an action a misbehaving model produces, without torch on the board.
"""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase

from device.manifest import ActionSpec

_DISCRETE = ("Categorical", "OneHot", "DiscreteTensorSpec", "OneHotDiscreteTensorSpec")
_BOUNDED = ("Bounded", "BoundedContinuous", "BoundedTensorSpec")
_UNBOUNDED = ("Unbounded", "UnboundedContinuous", "UnboundedContinuousTensorSpec")


def _spec_of(env: EnvBase | None, policy: TensorDictModuleBase) -> object | None:
    if env is not None:
        return env.action_spec
    spec = getattr(policy, "spec", None)  # TorchRL actors (ProbabilisticActor, QValueActor...) keep theirs
    try:
        return spec["action"] if spec is not None and "action" in spec.keys() else None
    except (AttributeError, KeyError, TypeError):
        return None


def action_spec(env: EnvBase | None, policy: TensorDictModuleBase, size: int) -> ActionSpec | None:
    """The manifest's ActionSpec for an action of `size` elements; None when no spec says what it is."""
    spec = _spec_of(env, policy)
    name = type(spec).__name__
    if name in _DISCRETE:
        return ActionSpec("discrete", n=int(spec.space.n))
    if name in _UNBOUNDED:
        return ActionSpec("continuous")
    if name in _BOUNDED:
        low = torch.as_tensor(spec.space.low, dtype=torch.float64).expand(spec.shape).reshape(-1)
        high = torch.as_tensor(spec.space.high, dtype=torch.float64).expand(spec.shape).reshape(-1)
        if low.numel() != size:
            return ActionSpec("continuous")
        return ActionSpec("continuous", low=low.tolist(), high=high.tolist())
    return None
