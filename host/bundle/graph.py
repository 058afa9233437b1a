"""Any TorchRL actor plus its env's observation transforms -> one graph of positional tensors.

This is TorchRL's export tutorial done generally. The env's transforms are
prepended to the policy so the board feeds raw observations; what is state
(recurrent modules, `CatFrames` stacks) becomes explicit graph inputs and
outputs, and one-hot actions become an index. The graph's I/O is derived
from the module's `in_keys`/`out_keys` and the env's specs, or from an
example TensorDict when the policy reads the user's own sensors.

Stateful pieces follow one protocol: every state input is reset to zeros at
episode start and fed the graph's previous output after that; an optional
`is_init` input is True on the first step of an episode. A `CatFrames`
stack uses `is_init` to pad itself as TorchRL does ("same" or a constant),
and recurrent modules read it exactly as they do in TorchRL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.envs import CatFrames, Compose, EnvBase, ObservationNorm, Transform, TransformedEnv

from device.manifest import ACTION_OUTPUT, EPISODE_START_INPUT, StatePair, TensorSpec
from host.bundle.traceable import traceable
from host.envs import ale_of
from host.errors import ExportError
from host.frame_stack import StackFrames

NestedKey = str | tuple[str, ...]
VALUE_KEYS = ("action_value", "logits")
"""Outputs kept beside the action when the policy writes them: what verify and the self-test compare."""

# Transforms that shape rewards, count steps or prime states: they act on the
# env's bookkeeping, not on what the policy sees, so they stay out of the graph.
_BOOKKEEPING = {"StepCounter", "RewardSum", "RewardScaling", "RewardClipping", "InitTracker", "TensorDictPrimer",
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


@dataclass(frozen=True)
class Slot:
    """One graph input or output: where it lives in the TensorDict and its name and spec in the graph."""

    key: NestedKey
    spec: TensorSpec


@dataclass
class GraphPlan:
    """What the graph reads and writes, in positional order."""

    observations: list[Slot]
    state_in: list[Slot]
    episode_start: Slot | None
    action: Slot
    values: Slot | None
    state_out: list[Slot]
    one_hot_action: bool
    scalar_action: bool = False
    """The game's action index comes out as a 0-d tensor (however many unit dims the policy's batching added)."""
    module_states: int = 0
    """How many of `state_in` the policy itself carries (the rest are CatFrames stacks, carried by the env)."""
    state: list[StatePair] = field(default_factory=list)
    normalization: list[dict] = field(default_factory=list)
    """The VecNorm statistics baked into the graph, for the manifest's provenance."""

    @property
    def inputs(self) -> list[Slot]:
        """Observations, then states, then the episode-start flag."""
        return [*self.observations, *self.state_in, *([self.episode_start] if self.episode_start else [])]

    @property
    def outputs(self) -> list[Slot]:
        """Action, then values, then next states."""
        return [self.action, *([self.values] if self.values else []), *self.state_out]


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


class PolicyGraph(nn.Module):
    """Positional tensors in, positional tensors out: what torch.export, AOTInductor and ONNX see."""

    def __init__(self, chain: TensorDictModuleBase, plan: GraphPlan) -> None:
        super().__init__()
        self.chain, self.plan = chain, plan
        self._in_keys = [s.key for s in plan.inputs]
        self._out_keys = [s.key for s in plan.outputs]

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One decision."""
        td = TensorDict({}, batch_size=[])
        for key, value in zip(self._in_keys, tensors, strict=True):
            td.set(key, value)
        td = self.chain(td)
        outs = [td.get(key) for key in self._out_keys]
        if self.plan.one_hot_action:
            outs[0] = outs[0].argmax(-1)
        if self.plan.one_hot_action or self.plan.scalar_action:
            outs[0] = outs[0].reshape(())
        return tuple(outs)


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


def _spec(name: str, value: torch.Tensor) -> TensorSpec:
    return TensorSpec(name, list(value.shape), str(value.numpy().dtype) if value.dtype != torch.bool else "bool")


def is_vecnorm(t: Transform) -> bool:
    """VecNorm (v1) or VecNormV2."""
    return type(t).__name__ in ("VecNorm", "VecNormV2")


def _has_statistics(t: Transform) -> bool:
    """Whether a VecNorm has counted any sample: v1 keeps `<key>_count` in `_td`, v2 a `_count` per key."""
    if type(t).__name__ == "VecNorm":
        counts = None if t._td is None else [v for k, v in t._td.items() if str(k).endswith("_count")]
    else:
        counts = None if getattr(t, "_count", None) is None else list(t._count.values(True, True))
    return bool(counts) and all(bool((c > 0).all()) for c in counts)


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
                        "eps": float(t.eps), "decay": float(t.decay),
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
        elif is_vecnorm(t) and not _has_statistics(t):
            problems.append(f"{name} has no statistics yet (step the env, or load them, before export)")
        elif name in _BOOKKEEPING or name in TRAINING_ONLY or is_vecnorm(t):
            continue
        elif getattr(t, "in_keys_inv", None):
            problems.append(f"{name} transforms actions (the board feeds actions to the game unchanged; drop it)")
        elif isinstance(t, CatFrames) and t.as_inverse:
            problems.append("CatFrames(as_inverse=True) stacks actions (stack observations instead)")
        elif isinstance(t, ObservationNorm) and not t.initialized:
            problems.append("ObservationNorm has no statistics yet (call init_stats() before export)")
    return problems


def check_transforms(env: EnvBase | None) -> None:
    """Refuse, before the env is touched, every transform the board cannot reproduce, all in one line."""
    problems = transform_problems(env)
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
        elif type(t).__name__ in _BOOKKEEPING or type(t).__name__ in TRAINING_ONLY:
            continue
        elif isinstance(t, CatFrames):
            for in_key, out_key in zip(t.in_keys, t.out_keys, strict=True):
                state_key = f"{flat_name(out_key)}_stack"
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
        else:
            modules.append(t)
    return modules, stacks, norms


def _writes(policy: TensorDictModuleBase, key: NestedKey) -> NestedKey | None:
    """Where the policy writes the next value of a state it reads: ("next", key), or key itself."""
    outs = policy.out_keys
    nxt = ("next", *key) if isinstance(key, tuple) else ("next", key)
    if nxt in outs:
        return nxt
    return key if key in outs else None


def state_keys(policy: TensorDictModuleBase) -> list[NestedKey]:
    """The keys the policy reads and writes back: its recurrent state (is_init excluded)."""
    return [k for k in policy.in_keys if k != EPISODE_START_INPUT and _writes(policy, k) is not None]


def _example(policy: TensorDictModuleBase, raw: TensorDictBase, pre: list[TensorDictModuleBase], stacks: list[dict]
             ) -> tuple[TensorDict, list[NestedKey], list[NestedKey], torch.Tensor | None]:
    """One graph input as a TensorDict (observations, zeroed states, is_init True), its observation and state keys."""
    states = state_keys(policy)
    needs_init = EPISODE_START_INPUT in policy.in_keys or bool(stacks)
    reserved = {*states, EPISODE_START_INPUT}
    observations = [k for k in raw.keys(include_nested=True, leaves_only=True)
                    if k not in reserved and k not in ("done", "terminated", "truncated", "reward")]
    if not observations:
        raise ExportError("the policy reads no observation the env or example provides; check its in_keys")
    example = TensorDict({}, batch_size=[])
    for k in observations:
        example.set(k, raw.get(k))
    for k in states:
        if k not in raw.keys(include_nested=True):
            raise ExportError(f"the policy carries state {k!r} but no initial value is known; add the module's "
                              "primer to the env (env.append_transform(module.make_tensordict_primer())) "
                              "or put it in the example")
        example.set(k, torch.zeros_like(raw.get(k)))
    init_value = raw.get(EPISODE_START_INPUT, None) if needs_init else None
    if needs_init:
        init_value = torch.ones(1, dtype=torch.bool) if init_value is None else torch.ones_like(init_value)
        example.set(EPISODE_START_INPUT, init_value)
    # Stacks: their state has the shape of the stacked observation; one eager pass finds it.
    probe = example.clone()
    for s in stacks:
        frame = _run_prefix(pre, probe, s["in"])
        n_dim = list(frame.shape)
        n_dim[s["dim"]] *= s["n"]
        example.set(s["state"], torch.zeros(n_dim, dtype=frame.dtype))
    return example, observations, states, init_value


def _first_step(chain: TensorDictModuleBase, example: TensorDict) -> TensorDictBase:
    try:
        with torch.no_grad():
            result = chain(example.clone())
    except Exception as err:  # any module error: name it in one line
        raise ExportError(f"the policy fails on the env's observations: {type(err).__name__}: "
                          f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}") from err
    if "action" not in result.keys(include_nested=True):
        raise ExportError("the policy writes no 'action'; export the actor that acts (e.g. QValueActor, "
                          "ProbabilisticActor), not a value network")
    return result


def _state_slots(policy: TensorDictModuleBase, example: TensorDict, result: TensorDictBase, states: list[NestedKey],
                 stacks: list[dict]) -> tuple[list[Slot], list[Slot]]:
    """State inputs and outputs: the policy's own (recurrent) first, then the CatFrames stacks."""
    def slot(key: NestedKey, name: str, value: torch.Tensor) -> Slot:
        return Slot(key, _spec(name, value))

    module_in = [slot(k, flat_name(k), example.get(k)) for k in states]
    module_out = [slot(_writes(policy, k), f"next_{flat_name(k)}", result.get(_writes(policy, k))) for k in states]
    stack_in = [slot(s["state"], s["state"], example.get(s["state"])) for s in stacks]
    stack_out = [slot(s["next"], s["next"], result.get(s["next"])) for s in stacks]
    state_in, state_out = [*module_in, *stack_in], [*module_out, *stack_out]
    for i, o in zip(state_in, state_out, strict=True):
        if i.spec.shape != o.spec.shape or i.spec.dtype != o.spec.dtype:
            raise ExportError(f"state {i.spec.name!r} goes in as {i.spec.dtype}{i.spec.shape} but comes out as "
                              f"{o.spec.dtype}{o.spec.shape}; a carried state must keep its shape")
    return state_in, state_out


def plan_graph(policy: TensorDictModuleBase, raw: TensorDictBase, one_hot: bool,
               env: EnvBase | None = None) -> tuple[PolicyGraph, tuple[torch.Tensor, ...]]:
    """Build the graph for `policy` fed by the raw observations in `raw` (one real input, states included)."""
    pre, stacks, norms = preprocessing(env)
    stepped = traceable(policy)  # the same step, without the branches on data torch.export cannot capture
    chain = TensorDictSequential(*pre, stepped) if pre else TensorDictSequential(stepped)
    example, observations, states, init_value = _example(policy, raw, pre, stacks)
    result = _first_step(chain, example)
    action = result.get("action")
    if one_hot:
        action = action.argmax(-1).reshape(())
    # A game takes one index: a policy that batches its input (UnsqueezeTransform) writes it as [1].
    scalar = one_hot or action.shape == () or (ale_of(env) is not None and action.numel() == 1
                                               and not action.is_floating_point())
    action = action.reshape(()) if scalar else action
    values_key = next((k for k in VALUE_KEYS if k in result.keys()), None)
    state_in, state_out = _state_slots(policy, example, result, states, stacks)
    plan = GraphPlan(
        observations=[Slot(k, _spec(flat_name(k), example.get(k))) for k in observations],
        state_in=state_in,
        episode_start=Slot(EPISODE_START_INPUT, _spec(EPISODE_START_INPUT, init_value)) if init_value is not None
        else None,
        action=Slot("action", _spec(ACTION_OUTPUT, action)),
        values=Slot(values_key, _spec(values_key, result.get(values_key))) if values_key else None,
        state_out=state_out,
        one_hot_action=one_hot,
        scalar_action=scalar,
        module_states=len(states),
        normalization=norms,
        state=[StatePair(i.spec.name, o.spec.name, i.spec.shape, i.spec.dtype) for i, o in zip(state_in, state_out,
                                                                                              strict=True)],
    )
    graph = PolicyGraph(chain, plan).eval()
    args = tuple(example.get(s.key) if s.key != EPISODE_START_INPUT else init_value for s in plan.inputs)
    names = [s.spec.name for s in [*plan.inputs, *plan.outputs]]
    if len(set(names)) != len(names):
        raise ExportError(f"graph names collide ({names}); rename the policy's keys")
    return graph, args


def _run_prefix(pre: list[TensorDictModuleBase], td: TensorDictBase, key: NestedKey) -> torch.Tensor:
    """Run the preprocessing until `key` exists (the frame a stack is made of)."""
    td = td.clone()
    with torch.no_grad():
        for m in pre:
            if isinstance(m, TensorDictModule) and isinstance(m.module, KeptStack):
                if m.in_keys[1] == key:
                    return td.get(key)
                continue
            td = m(td)
    return td.get(key)
