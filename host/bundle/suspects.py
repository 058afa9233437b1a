"""When a bundle disagrees with its eager policy: the user's own transforms, and why each may be the cause.

What is found goes into the one line verify ends with.

edgerl puts TorchRL's transforms into the graph knowing what each does; a transform a user wrote goes in by
tracing its `_call`, which holds when it is a pure function of its input applied to every observation. Two ways
it is not, each seen from outside the graph:
- TorchRL applies a transform to the observations a reset returns only through its `_reset`; the base class's
  `_reset` returns them untouched, so a transform that defines `_apply_transform` (or `_call`) alone leaves every
  episode's first observation raw in the env, while the graph transforms it.
- A transform that keeps Python-side state (a counter, a running mean kept in attributes) computes something
  else at each call; its attributes change while the env runs, and the traced graph holds only one value of them.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torchrl.envs import EnvBase, TransformedEnv
from torchrl.envs.transforms import Compose, Transform

_PLAIN = (bool, int, float, complex, str, bytes, tuple, list, dict, set, torch.Tensor)


def own_transforms(env: EnvBase | None) -> list[Transform]:
    """The env's transforms whose class is not TorchRL's (nested Composes walked), in order."""
    found: list[Transform] = []

    def walk(t: Any) -> None:
        if isinstance(t, Compose):
            for inner in t.transforms:
                walk(inner)
        elif isinstance(t, Transform) and not type(t).__module__.startswith("torchrl."):
            found.append(t)

    if isinstance(env, TransformedEnv):  # a batched env's own attributes are its workers' (closed ones raise)
        walk(env.transform)
    return found


def _state(t: Transform) -> dict[str, Any]:
    """What a transform holds outside its weights: plain attributes and buffers, copied."""
    held = {k: v for k, v in vars(t).items() if isinstance(v, _PLAIN) and not k.startswith("_")}
    held.update({f"buffer {k}": v for k, v in t.named_buffers()})
    out = {}
    for key, value in held.items():
        try:
            out[key] = copy.deepcopy(value.detach() if isinstance(value, torch.Tensor) else value)
        except Exception:  # noqa: BLE001 - an attribute that cannot be copied cannot be compared either
            continue
    return out


def snapshot(env: EnvBase | None) -> dict[int, dict[str, Any]]:
    """The user's transforms' state before the export runs the env (compared after a failed verify)."""
    return {id(t): _state(t) for t in own_transforms(env)}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and bool(
            torch.equal(a, b))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001
        return False


def _overrides(t: Transform, name: str) -> bool:
    return getattr(type(t), name) is not getattr(Transform, name)


def suspects(env: EnvBase | None, before: dict[int, dict[str, Any]]) -> list[str]:
    """Each user transform that may cause a disagreement, with the likely cause; the rest named as unchecked."""
    said, plain = [], []
    for t in own_transforms(env):
        name = type(t).__name__
        now = _state(t)
        changed = sorted(k for k, v in before.get(id(t), {}).items() if not _same(v, now.get(k)))
        if not _overrides(t, "_reset") and (_overrides(t, "_apply_transform") or _overrides(t, "_call")):
            said.append(f"{name} is not applied to reset observations (TorchRL calls only `_reset` there): define "
                        "`_reset` to return `self._call(tensordict_reset)`")
        elif changed:
            said.append(f"{name} changes between identical inputs ({', '.join(changed[:3])} changed while the env "
                        "ran): it keeps state edgerl cannot carry; make it a function of its input")
        else:
            plain.append(name)
    if plain and not said:
        said.append(f"your own transform{'s' if len(plain) > 1 else ''} {', '.join(plain)} went into the graph by "
                    "tracing: check that each is a pure function of its input (docs/policies.md)")
    return said
