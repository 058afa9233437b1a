"""What export and verify both need: a policy's graph, built the one way, and the eager reference it is judged by.

`build_graph` turns an eval-mode policy fed by its env's raw observations
(or the user's example) into the positional graph every backend is made
from; `reference` steps the eager policy in its own env (or around the
example) to get the inputs and outputs every backend must reproduce.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules.utils import get_primers_from_module

from device.manifest import EPISODE_START_INPUT, EdgerlError
from host.bundle.amplified_rounding import rounding_problems
from host.bundle.graph import GraphPlan, PolicyGraph, plan_graph, state_keys
from host.bundle.rollout import RawTap, Sequence, Trace, eager_env_rollout, eager_example_rollout, step_bar
from host.bundle.transforms import check_transforms, env_transforms
from host.envs import base_env, is_vecnorm
from host.errors import ExportError, one_line


@contextmanager
def frozen_statistics(env: EnvBase | None) -> Iterator[None]:
    """Freeze the env's VecNorms while the export reads and replays it.

    The statistics baked into the graph are then the ones the eager reference normalises with; each
    VecNorm is left as frozen (or not) as it was.
    """
    thawed = [t for t in env_transforms(env) if is_vecnorm(t) and not t.frozen]
    for t in thawed:
        t.freeze()
    try:
        yield
    finally:
        for t in thawed:
            t.unfreeze()


def exploration_type(exploration: str) -> ExplorationType:
    """TorchRL's exploration type for a manifest's mode: deterministic or random."""
    if exploration not in ("deterministic", "random"):
        raise ExportError(f"exploration must be 'deterministic' or 'random', not {exploration!r}")
    return ExplorationType.RANDOM if exploration == "random" else ExplorationType.DETERMINISTIC


def _is_one_hot(env: EnvBase | None) -> bool:
    return env is not None and type(env.action_spec).__name__ == "OneHot"


def _raw_example(policy: TensorDictModuleBase, env: EnvBase | None, example: TensorDictBase | None
                 ) -> TensorDictBase:
    """One real input as the board will feed it: raw observations, and the states the env or module primes."""
    if env is None:
        if example is None:
            raise ExportError("a policy without an env needs an example input: a TensorDict with one value "
                              "of every key the policy reads")
        if not isinstance(example, TensorDictBase):
            raise ExportError(f"the example must be a TensorDict, not {type(example).__name__}")
        return example.clone()
    if not isinstance(env, EnvBase):
        raise ExportError(f"the env must be a TorchRL env (EnvBase), not {type(env).__name__}")
    keys = list(base_env(env).observation_spec.keys(include_nested=True, leaves_only=True))
    with RawTap(env, keys) as tap:
        transformed = env.reset()
    raw = TensorDict(dict(tap.last), batch_size=[])
    # Besides raw observations, the graph takes what the policy carries: its states and is_init. Keys the
    # transforms produce are made inside the graph, so they are not taken from the transformed reset.
    carried = [k for k in policy.in_keys if k == EPISODE_START_INPUT or k in state_keys(policy)]
    for key in carried:
        if key not in raw.keys(include_nested=True) and key in transformed.keys(include_nested=True):
            raw.set(key, transformed.get(key))
    primer = get_primers_from_module(policy, warn=False)
    if primer is not None:
        for key, spec in primer.primers.items(include_nested=True, leaves_only=True):
            if key in carried and key not in raw.keys(include_nested=True):
                raw.set(key, spec.zero())
    return raw


def build_graph(policy: TensorDictModuleBase, env: EnvBase | None, example: TensorDictBase | None,
                mode: ExplorationType) -> tuple[PolicyGraph, tuple[torch.Tensor, ...]]:
    """The graph of an eval-mode policy fed by its env's raw observations (or the example), and one input for it."""
    check_transforms(env, more=rounding_problems(env))
    try:
        raw = _raw_example(policy, env, example)
    except EdgerlError:
        raise
    except Exception as err:  # the user's env or transforms fail on reset: name it in one line
        raise ExportError(f"the env fails on reset: {one_line(err)}") from err
    with set_exploration_type(mode):
        return plan_graph(policy, raw, _is_one_hot(env), env)


def reference(policy: TensorDictModuleBase, env: EnvBase | None, example: TensorDictBase | None, plan: GraphPlan,
              steps: int, seed: int, mode: ExplorationType, progress: bool = False) -> tuple[Sequence, Trace]:
    """Real inputs and the eager policy's outputs on them (the env's own stepping, or around the example)."""
    bar = step_bar("eager", progress)
    try:
        if env is not None:
            return eager_env_rollout(policy, env, plan, steps, seed, mode, progress=bar)
        return eager_example_rollout(policy, example, plan, steps, seed, mode, progress=bar)
    except EdgerlError:
        raise
    except Exception as err:  # the user's env or policy fails while stepping: one line, not a traceback
        raise ExportError(f"stepping the eager policy {'in its env' if env is not None else 'on its example'} "
                          f"failed: {one_line(err)}") from err


