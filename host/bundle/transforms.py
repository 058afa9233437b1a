"""The env's transforms, read for the graph: which become graph modules, which stay out, which are refused.

Observation transforms are prepended to the policy as they are, except four rewritten into traceable
equivalents: `CatFrames` becomes an explicit state (`KeptStack`), `ObservationNorm` a frozen affine map,
`VecNorm`/`VecNormV2` the affine map their current statistics define, and a nearest `Resize` picks its pixels
as torch does in every backend (`NearestResize`). Bookkeeping (step counts, reward shaping,
primers) and training's episode shaping (no-op starts, life-loss marks) stay out; what changes the game's
dynamics is refused, every problem at once.
"""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from torch import nn
from torchrl.envs import CatFrames, Compose, EnvBase, ObservationNorm, Transform, TransformedEnv

from device.manifest import EPISODE_START_INPUT
from host.bundle.nearest_resize import NearestResize, is_nearest, screen_of
from host.envs import is_vecnorm
from host.errors import ExportError
from host.frame_stack import StackFrames

NestedKey = str | tuple[str, ...]

# Transforms that shape rewards, count steps or prime states: they act on the
# env's bookkeeping, not on what the policy sees, so they stay out of the graph.
BOOKKEEPING = {"StepCounter", "RewardSum", "RewardScaling", "RewardClipping", "InitTracker", "TensorDictPrimer",
                "SignTransform", "TargetReturn", "DTypeCastTransform"}
# Transforms that shape only where training episodes begin or end: nothing the policy sees at a step. They are
# left out of the board's game and named in the manifest (provenance.training_only), with why.
TRAINING_ONLY = {"NoopResetEnv": "random no-op starts vary where training episodes begin; the board's game starts "
                                 "from the emulator's reset",
                 "EndOfLifeTransform": "life-loss marks shape training's value targets; the board's episode is the "
                                       "whole game"}
# Transforms that change the env's dynamics: the device loop cannot reproduce them.
_DYNAMICS = {"FrameSkipTransform": "set frame_skip on the GymEnv instead (ALE repeats the action natively)",
             "TimeMaxPool": "max-pooling over frames is not reproduced on the board; drop it and retrain",
             "ActionMask": "action masks are not reproduced on the board; drop it and retrain",
             "ActionDiscretizer": "action transforms are not reproduced on the board; give the game its own "
                                  "actions"}


def flat_name(key: NestedKey) -> str:
    """The graph name of a TensorDict key: nested keys joined with '_', as in TorchRL's export tutorial."""
    return "_".join(key) if isinstance(key, tuple) else key


class Affine(nn.Module):
    """`ObservationNorm` with its statistics frozen: its own `initialized` check does not trace."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, standard_normal: bool) -> None:
        super().__init__()
        self.register_buffer("loc", loc.detach().clone())
        self.register_buffer("scale", scale.detach().clone())
        self.standard_normal = bool(standard_normal)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalised observation, as ObservationNorm computes it."""
        return (obs - self.loc) / self.scale if self.standard_normal else obs * self.scale + self.loc


class KeptStack(StackFrames):
    """The next stack twice: once for the transforms after CatFrames, once as the state carried to the next step."""

    def forward(self, stack: torch.Tensor, frame: torch.Tensor, is_init: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the stack the next transform reads, the stack carried)."""
        nxt = super().forward(stack, frame, is_init)
        return nxt, nxt


def env_transforms(env: EnvBase | None) -> list[Transform]:
    """The env's transforms in order, Compose flattened."""
    if not isinstance(env, TransformedEnv):
        return []
    out: list[Transform] = []

    def walk(t: Transform) -> None:
        if isinstance(t, Compose):
            for child in t.transforms:
                walk(child)
        else:
            out.append(t)

    walk(env.transform)
    return out


MIN_VECNORM_SAMPLES = 10
"""Fewer observations than this are not statistics a policy was trained on: a ParallelEnv's EnvCreator resets
its env in the main process to read the specs, so a VecNorm inside the workers that the user never stepped
has already counted a reset or two (its loc the first observation, its scale ~0)."""


def samples_of(t: Transform) -> float:
    """How many observations a VecNorm has counted, for its least-counted key.

    v1 keeps `<key>_count` in `_td` (decayed), v2 a `_count` per key.
    """
    if type(t).__name__ == "VecNorm":
        counts = [] if t._td is None else [v for k, v in t._td.items() if str(k).endswith("_count")]
    else:
        counts = [] if getattr(t, "_count", None) is None else list(t._count.values(True, True))
    return min((float(c.min()) for c in counts), default=0.0)


def vecnorm_affine(t: Transform, observed: set) -> tuple[list[TensorDictModuleBase], list[dict]]:
    """A VecNorm's current statistics as the affine map it applies now, and what the manifest records of them.

    The loc and scale are TorchRL's own (`_get_loc_scale`, its bias correction
    and `eps` included); VecNorm (v1) clamps the scale once more when it
    normalises, so that clamp is applied here too.
    """
    loc, scale = t._get_loc_scale()
    modules, records = [], []
    for in_key, out_key in zip(t.in_keys, t.out_keys, strict=False):
        if in_key not in observed:
            continue  # a normalised reward: bookkeeping, not what the policy sees
        key_scale = scale.get(in_key).clamp_min(t.eps) if type(t).__name__ == "VecNorm" else scale.get(in_key)
        modules.append(TensorDictModule(Affine(loc.get(in_key), key_scale, True), in_keys=[in_key],
                                        out_keys=[out_key]))
        records.append({"transform": type(t).__name__, "in": flat_name(in_key), "out": flat_name(out_key),
                        "eps": float(t.eps), "decay": float(t.decay), "samples": round(samples_of(t), 2),
                        "loc": _summary(loc.get(in_key)), "scale": _summary(key_scale)})
    return modules, records


def _summary(value: torch.Tensor) -> list | dict:
    """Small statistics in full, large ones (pixels) by shape and range."""
    if value.numel() <= 256:
        return value.reshape(-1).tolist()
    return {"shape": list(value.shape), "min": float(value.min()), "max": float(value.max())}


def observation_keys(env: EnvBase | None) -> set:
    """Every observation key of the env, transformed or not."""
    if env is None:
        return set()
    keys = set(env.observation_spec.keys(include_nested=True, leaves_only=True))
    base = env.base_env if isinstance(env, TransformedEnv) else env
    return keys | set(base.observation_spec.keys(include_nested=True, leaves_only=True))


def transform_problems(env: EnvBase | None) -> list[str]:
    """Every transform of the env the board cannot reproduce or that is not ready, each with what to do."""
    problems = []
    for t in env_transforms(env):
        name = type(t).__name__
        if name in _DYNAMICS:
            problems.append(f"{name} changes the game's dynamics ({_DYNAMICS[name]})")
        elif is_vecnorm(t) and (seen := samples_of(t)) < MIN_VECNORM_SAMPLES:
            problems.append(f"{name} has no statistics yet ({seen:.0f} observations counted, the env's resets "
                            "at most; step the env, or load them, before export)")
        elif name in BOOKKEEPING or name in TRAINING_ONLY or is_vecnorm(t):
            continue
        elif getattr(t, "in_keys_inv", None):
            problems.append(f"{name} transforms actions (the board feeds actions to the game unchanged; drop it)")
        elif isinstance(t, CatFrames) and t.as_inverse:
            problems.append("CatFrames(as_inverse=True) stacks actions (stack observations instead)")
        elif isinstance(t, ObservationNorm) and not t.initialized:
            problems.append("ObservationNorm has no statistics yet (call init_stats() before export)")
    return problems


def check_transforms(env: EnvBase | None, more: list[str] | None = None) -> None:
    """Refuse, before the env is touched, every transform the board cannot reproduce, all in one line.

    `more`: problems the caller found beside them (onnxruntime's magnified rounding).
    """
    problems = transform_problems(env) + (more or [])
    if problems:
        raise ExportError(f"the env has {len(problems)} transform{'s' if len(problems) > 1 else ''} the board "
                          f"cannot take: {'; '.join(problems)}")


def training_only(env: EnvBase | None) -> list[dict]:
    """The env's transforms left out of the board's game, and why (recorded in the manifest)."""
    return [{"transform": type(t).__name__, "why": TRAINING_ONLY[type(t).__name__]} for t in env_transforms(env)
            if type(t).__name__ in TRAINING_ONLY]


def preprocessing(env: EnvBase | None) -> tuple[list[TensorDictModuleBase], list[dict], list[dict]]:
    """The env's observation transforms as modules, and the stacks and normalisations they hold.

    CatFrames becomes StackFrames, ObservationNorm and VecNorm their affine maps; dynamics changes are refused.
    """
    check_transforms(env)
    modules: list[TensorDictModuleBase] = []
    stacks: list[dict] = []
    norms: list[dict] = []
    for t in env_transforms(env):
        if is_vecnorm(t):
            baked, records = vecnorm_affine(t, observation_keys(env))
            modules.extend(baked)
            norms.extend(records)
        elif type(t).__name__ in BOOKKEEPING or type(t).__name__ in TRAINING_ONLY:
            continue
        elif isinstance(t, CatFrames):
            for in_key, out_key in zip(t.in_keys, t.out_keys, strict=True):
                state_key = f"{flat_name(out_key)}_stack"
                if any(st["state"] == state_key for st in stacks):  # a second stack of the same key (stacks of stacks)
                    state_key = f"{state_key}{len(stacks) + 1}"
                kept = f"next_{state_key}"
                stacks.append({"in": in_key, "out": out_key, "state": state_key, "next": kept, "n": t.N,
                               "dim": t.dim})
                # The stack is kept as it leaves CatFrames: a later transform on the same key (the Atari
                # references' VecNorm) changes what the policy sees, not what CatFrames carries to the next step.
                modules.append(TensorDictModule(KeptStack(t.N, t.dim, t.padding, float(t.padding_value)),
                                                in_keys=[state_key, in_key, EPISODE_START_INPUT],
                                                out_keys=[out_key, kept]))
        elif isinstance(t, ObservationNorm):
            for in_key, out_key in zip(t.in_keys, t.out_keys, strict=True):
                modules.append(TensorDictModule(Affine(t.loc, t.scale, t.standard_normal), in_keys=[in_key],
                                                out_keys=[out_key]))
        elif is_nearest(t):
            for in_key, out_key in zip(t.in_keys, t.out_keys, strict=True):
                modules.append(TensorDictModule(NearestResize(t, screen_of(t, in_key)), in_keys=[in_key],
                                                out_keys=[out_key]))
        else:
            modules.append(t)
    return modules, stacks, norms
