"""Real inputs and the reference outputs for them: the eager TorchRL policy, and any backend stepped as the board does.

`eager_env_rollout` steps the user's own TorchRL env (its transforms,
CatFrames buffers, primers and InitTracker included) with the eager policy,
and taps the raw observations the base env produced: what the board will
feed. `eager_example_rollout` does the same for a policy with no env,
around the user's example input. `graph_rollout` steps any exported form
(pt2, AOTInductor, ONNX) the way `device.Policy` does: states from zeros at
episode start, `is_init` True on an episode's first step.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import CatFrames, EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp

from host.bundle.graph import GraphPlan
from host.bundle.transforms import NestedKey, env_transforms
from host.envs import base_env

Progress = Callable[[Iterable[int]], Iterable[int]] | None


def step_bar(label: str, on: bool) -> Progress:
    """A progress bar over steps, with rate and time left, for a terminal (`on`); None when not asked."""
    if not on:
        return None
    from tqdm import tqdm  # deferred: only a terminal's export or verify draws one

    def bar(steps: Iterable[int]) -> Iterable[int]:
        # A terminal that reports no size (a pty nobody sized: `script`, a CI runner) made tqdm draw nothing;
        # get_terminal_size falls back to 80 x 24 there.
        size = shutil.get_terminal_size()
        return tqdm(steps, desc=f"{label:>6}", unit="step", leave=False, ncols=size.columns, nrows=size.lines)

    return bar


@dataclass
class Sequence:
    """Observation inputs by graph name, [T, ...], and the episode starts along them."""

    inputs: dict[str, np.ndarray]
    starts: np.ndarray

    def __len__(self) -> int:
        """Number of steps."""
        return len(self.starts)


@dataclass
class Trace:
    """Every graph output by name, [T, ...], along a sequence."""

    outputs: dict[str, np.ndarray]


def _np(value: torch.Tensor) -> np.ndarray:
    return value.detach().cpu().numpy().copy()


def stack_buffers(env: EnvBase | None) -> list[tuple[CatFrames, NestedKey]]:
    """Each CatFrames stack of the env, in the graph's order of stack states (preprocessing's order)."""
    return [(t, key) for t in env_transforms(env) if isinstance(t, CatFrames) for key in t.in_keys]


def _eager_outputs(td: TensorDictBase, plan: GraphPlan, stacks: list[tuple[CatFrames, NestedKey]] = ()
                   ) -> dict[str, np.ndarray]:
    action = td.get(plan.action.key)
    if plan.one_hot_action:
        action = action.argmax(-1)
    if plan.one_hot_action or plan.action.spec.shape == []:
        action = action.reshape(())
    out = {plan.action.spec.name: _np(action)}
    for slot in ([plan.values] if plan.values else []) + plan.params + plan.state_out[:plan.module_states]:
        out[slot.spec.name] = _np(td.get(slot.key))
    # A stack's state is CatFrames' own buffer: what the env carries to the next step, before any transform after
    # it (a VecNorm on the same key) changes what the policy sees.
    for slot, (t, key) in zip(plan.state_out[plan.module_states:], stacks, strict=True):
        out[slot.spec.name] = _np(getattr(t, f"_cat_buffers_{key}"))
    return out


def _stack(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def _fill_missing(td: TensorDictBase, plan: GraphPlan, start: bool) -> None:
    """States and is_init a user's env does not provide, as the board would feed them."""
    for slot in plan.state_in[:plan.module_states]:
        if slot.key not in td.keys(include_nested=True):
            td.set(slot.key, torch.zeros(slot.spec.shape, dtype=getattr(torch, slot.spec.dtype)))
    if plan.episode_start is not None and plan.episode_start.key not in td.keys():
        td.set(plan.episode_start.key, torch.full(plan.episode_start.spec.shape, start, dtype=torch.bool))


class RawTap:
    """Records the raw observations the base env returns, before any transform touches them."""

    def __init__(self, env: EnvBase, keys: list) -> None:
        self.base, self.keys, self.last = base_env(env), keys, {}

    def __enter__(self) -> RawTap:
        step, reset = self.base._step, self.base._reset

        def tapped_step(td: TensorDictBase) -> TensorDictBase:
            return self._keep(step(td))

        def tapped_reset(td: TensorDictBase | None = None, **kwargs: object) -> TensorDictBase:
            return self._keep(reset(td, **kwargs))

        self.base._step, self.base._reset = tapped_step, tapped_reset
        return self

    def _keep(self, out: TensorDictBase) -> TensorDictBase:
        self.last = {k: out.get(k).clone() for k in self.keys if k in out.keys(include_nested=True)}
        return out

    def __exit__(self, *exc: object) -> None:
        del self.base._step, self.base._reset


def eager_env_rollout(policy: TensorDictModuleBase, env: EnvBase, plan: GraphPlan, steps: int, seed: int,
                      mode: ExplorationType, segment: int = 250, progress: Progress = None
                      ) -> tuple[Sequence, Trace]:
    """Step the user's env with seeded random actions; the eager policy decides on every step.

    Actions are random so the frames cover the game, not one policy's habits;
    episodes are cut every `segment` steps so states cross several resets.
    """
    obs_keys = [s.key for s in plan.observations]
    stacks = stack_buffers(env)
    inputs, outputs, starts = [], [], []
    torch.manual_seed(seed)
    env.set_seed(seed)
    with RawTap(env, obs_keys) as tap, torch.no_grad(), set_exploration_type(mode):
        td, start = env.reset(), True
        indices: Iterable[int] = range(steps)
        for t in progress(indices) if progress else indices:
            if t and t % segment == 0:
                td, start = env.reset(), True
            raw = tap.last
            inputs.append({s.spec.name: _np(raw[s.key]) for s in plan.observations})
            starts.append(start)
            _fill_missing(td, plan, start)
            td = policy(td)
            outputs.append(_eager_outputs(td, plan, stacks))
            td.set("action", env.action_spec.rand())
            td = env.step(td)
            done = bool(td.get(("next", "done")).any())
            td = step_mdp(td)
            start = False
            if done:
                td, start = env.reset(), True
    return Sequence(_stack(inputs), np.asarray(starts)), Trace(_stack(outputs))


def eager_example_rollout(policy: TensorDictModuleBase, example: TensorDictBase, plan: GraphPlan, steps: int,
                          seed: int, mode: ExplorationType, segment: int = 250, progress: Progress = None
                          ) -> tuple[Sequence, Trace]:
    """Step the policy on observations around the example (seeded noise), carrying states as TorchRL does."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    inputs, outputs, starts = [], [], []
    td = TensorDict({}, batch_size=[])
    with torch.no_grad(), set_exploration_type(mode):
        indices: Iterable[int] = range(steps)
        for t in progress(indices) if progress else indices:
            start = t % segment == 0
            obs = {}
            for s in plan.observations:
                base = example.get(s.key)
                if base.is_floating_point():
                    scale = float(base.std()) if base.numel() > 1 and float(base.std()) > 0 else 1.0
                    base = base + scale * torch.randn(base.shape, generator=gen, dtype=base.dtype)
                obs[s.key] = base
                td.set(s.key, base)
            inputs.append({s.spec.name: _np(obs[s.key]) for s in plan.observations})
            starts.append(start)
            if start:
                for slot in plan.state_in:
                    td.set(slot.key, torch.zeros(slot.spec.shape, dtype=getattr(torch, slot.spec.dtype)))
            if plan.episode_start is not None:
                td.set(plan.episode_start.key, torch.full(plan.episode_start.spec.shape, start, dtype=torch.bool))
            td = policy(td)
            outputs.append(_eager_outputs(td, plan))
            # TorchRL's stepping: what the policy wrote for the next step becomes the state it reads.
            nxt = td.clone()
            for i, o in zip(plan.state_in, plan.state_out, strict=True):
                nxt.set(i.key, td.get(o.key))
            td = nxt.exclude("next") if "next" in nxt.keys() else nxt
    return Sequence(_stack(inputs), np.asarray(starts)), Trace(_stack(outputs))


Step = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def graph_rollout(step: Step, seq: Sequence, plan_inputs: list, state: list, episode_start: tuple | None,
                  progress: Progress = None) -> Trace:
    """Step an exported form as the board does: zeros and is_init at each start, its own outputs after."""
    carried: dict[str, np.ndarray] = {}
    rows = []
    indices: Iterable[int] = range(len(seq))
    for t in progress(indices) if progress else indices:
        start = bool(seq.starts[t])
        if start:
            carried = {p.input: np.zeros(p.shape, dtype=p.dtype) for p in state}
        feed = {name: seq.inputs[name][t] for name in seq.inputs}
        feed.update(carried)
        if episode_start is not None:
            name, shape = episode_start
            feed[name] = np.full(shape, start, dtype=bool)
        out = step({name: feed[name] for name in plan_inputs})
        rows.append(out)
        carried = {p.input: out[p.output] for p in state}
    return Trace(_stack(rows))


def states_fed(trace: Trace, seq: Sequence, state: list) -> dict[str, np.ndarray]:
    """The state inputs a trace implies: zeros at episode starts, the previous step's outputs after."""
    fed = {}
    for p in state:
        out = trace.outputs[p.output]
        inp = np.zeros_like(out)
        inp[1:] = out[:-1]
        inp[seq.starts] = 0
        fed[p.input] = inp
    return fed
