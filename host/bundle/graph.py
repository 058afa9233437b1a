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
from tensordict.nn import ProbabilisticTensorDictModule, TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, exploration_type

from device.manifest import ACTION_OUTPUT, EPISODE_START_INPUT, StatePair, TensorSpec
from host.bundle.traceable import materialize, traceable
from host.bundle.transforms import KeptStack, NestedKey, flat_name, preprocessing
from host.envs import ale_of
from host.errors import ExportError

VALUE_KEYS = ("action_value", "logits")
"""Outputs kept beside the action when the policy writes them: what verify and the self-test compare."""

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
    params: list[Slot] = field(default_factory=list)
    """A sampled continuous action's distribution parameters (loc, scale): a draw cannot be compared between
    backends, the distribution it is drawn from can (random mode only)."""

    @property
    def inputs(self) -> list[Slot]:
        """Observations, then states, then the episode-start flag."""
        return [*self.observations, *self.state_in, *([self.episode_start] if self.episode_start else [])]

    @property
    def outputs(self) -> list[Slot]:
        """Action, then values, then distribution parameters, then next states."""
        return [self.action, *([self.values] if self.values else []), *self.params, *self.state_out]


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


def _spec(name: str, value: torch.Tensor) -> TensorSpec:
    return TensorSpec(name, list(value.shape), str(value.numpy().dtype) if value.dtype != torch.bool else "bool")


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
    for i, s in enumerate(stacks):  # in order: a later stack on the same key takes the earlier one's output
        frame = _run_prefix(pre, example, i)
        n_dim = list(frame.shape)
        n_dim[s["dim"]] *= s["n"]
        example.set(s["state"], torch.zeros(n_dim, dtype=frame.dtype))
    return example, observations, states, init_value


def _sampled_from(policy: TensorDictModuleBase, result: TensorDictBase) -> list[NestedKey]:
    """The keys a continuous action is sampled from, when this step samples it (exploration RANDOM)."""
    if exploration_type() != ExplorationType.RANDOM:
        return []
    for module in policy.modules():
        if isinstance(module, ProbabilisticTensorDictModule):
            keys = list(module.in_keys.values()) if isinstance(module.in_keys, dict) else list(module.in_keys)
            return [k for k in keys if k in result.keys(include_nested=True)]
    return []


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
    example, observations, states, init_value = _example(policy, raw, pre, stacks)
    materialize(policy, TensorDictSequential(*pre, policy), example)
    stepped = traceable(policy)  # the same step, without the branches on data torch.export cannot capture
    chain = TensorDictSequential(*pre, stepped) if pre else TensorDictSequential(stepped)
    result = _first_step(chain, example)
    action = result.get("action")
    if one_hot:
        action = action.argmax(-1).reshape(())
    # A game takes one index: a policy that batches its input (UnsqueezeTransform) writes it as [1].
    scalar = one_hot or action.shape == () or (ale_of(env) is not None and action.numel() == 1
                                               and not action.is_floating_point())
    action = action.reshape(()) if scalar else action
    values_key = next((k for k in VALUE_KEYS if k in result.keys()), None)
    params = _sampled_from(policy, result) if values_key is None and action.is_floating_point() else []
    state_in, state_out = _state_slots(policy, example, result, states, stacks)
    plan = GraphPlan(
        observations=[Slot(k, _spec(flat_name(k), example.get(k))) for k in observations],
        state_in=state_in,
        episode_start=Slot(EPISODE_START_INPUT, _spec(EPISODE_START_INPUT, init_value)) if init_value is not None
        else None,
        action=Slot("action", _spec(ACTION_OUTPUT, action)),
        values=Slot(values_key, _spec(values_key, result.get(values_key))) if values_key else None,
        state_out=state_out,
        params=[Slot(k, _spec(flat_name(k), result.get(k))) for k in params],
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


def _run_prefix(pre: list[TensorDictModuleBase], td: TensorDictBase, index: int) -> torch.Tensor:
    """Run the preprocessing up to its `index`-th stack (earlier stacks included): the frame that stack takes."""
    td = td.clone()
    seen = 0
    with torch.no_grad():
        for m in pre:
            if isinstance(m, TensorDictModule) and isinstance(m.module, KeptStack):
                if seen == index:
                    return td.get(m.in_keys[1])
                seen += 1
            td = m(td)
    raise ExportError(f"internal: stack {index} not found in the preprocessing")
