"""Where a policy to export comes from: the user's factory, a built-in network, or an `edgerl train` checkpoint.

Each source gives the same thing, a TorchRL actor and the env it acts in
(or an example input), and `host.bundle.export.export_policy` takes it from there.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase

from device.manifest import EnvSpec
from host.checkpoint import load_checkpoint
from host.errors import ExportError
from host.policies import PolicyConfig, build_policy


@dataclass
class Source:
    """A policy to export, the env it was trained in (or None) and, without an env, an example input."""

    policy: TensorDictModuleBase
    env: EnvBase | None
    example: TensorDictBase | None = None
    label: str = "custom"
    """Names the policy in the manifest: the factory's file stem or the built-in network."""
    training: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def load_factory(spec: str) -> Source:
    """Import FILE.py and call FUNC(): it returns (policy, env) or (policy, None, example)."""
    path_text, sep, func_name = spec.rpartition(":")
    if not sep or not path_text or not func_name:
        raise ExportError(f"--from wants FILE.py:FUNC, got {spec!r}")
    path = Path(path_text)
    if not path.is_file():
        raise ExportError(f"--from: no file {path}")
    module_name = f"edgerl_user_{path.stem}"
    loader = importlib.util.spec_from_file_location(module_name, path)
    if loader is None or loader.loader is None:
        raise ExportError(f"--from: {path} is not a Python file")
    module = importlib.util.module_from_spec(loader)
    sys.modules[module_name] = module
    try:
        loader.loader.exec_module(module)
    except Exception as err:  # the user's code: report where it failed, in one line
        raise ExportError(f"--from: importing {path} failed: {type(err).__name__}: {err}") from err
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ExportError(f"--from: {path} has no function {func_name}()")
    try:
        made = func()
    except Exception as err:  # the user's code
        raise ExportError(f"--from: {func_name}() failed: {type(err).__name__}: {err}") from err
    if not isinstance(made, tuple) or len(made) not in (2, 3):
        raise ExportError(f"--from: {func_name}() must return (policy, env) or (policy, None, example), "
                          f"not {type(made).__name__}")
    policy, env, *rest = made
    example = rest[0] if rest else None
    if env is None and example is None:
        raise ExportError(f"--from: {func_name}() returned no env; return (policy, None, example) with an example "
                          "TensorDict holding one input of every key the policy reads")
    return Source(policy, env, example, label=path.stem.replace("_", "-"), description=spec)


def builtin_source(network: str, spec: EnvSpec, seed: int = 0, epsilon: float | None = None) -> Source:
    """One of edgerl's networks, freshly initialised, with its env."""
    cfg = PolicyConfig(network=network) if epsilon is None else PolicyConfig(network=network, epsilon=epsilon)
    built = build_policy(cfg, spec, seed=seed)
    return Source(built.actor, built.env, label=network, training={"frames_trained": 0, "untrained": True},
                  description=f"untrained {network}")


def checkpoint_source(path: Path, epsilon: float | None = None) -> Source:
    """The network an `edgerl train` run saved, rebuilt as a built-in policy with its weights."""
    ckpt = load_checkpoint(path)
    cfg: PolicyConfig = ckpt["policy"]
    if epsilon is not None:
        cfg = replace(cfg, epsilon=epsilon)
    built = build_policy(cfg, ckpt["env"])
    try:
        built.qnet.load_state_dict(ckpt["weights"])
    except RuntimeError as err:
        raise ExportError(f"checkpoint weights do not fit a {cfg.network} policy: {str(err).splitlines()[0]}") from err
    training = {k: v for k, v in ckpt.items() if k in ("frames", "wall_time_s", "eval", "hyperparameters", "algo")}
    training["frames_trained"] = int(ckpt.get("frames", 0))
    return Source(built.actor, built.env, label=cfg.network, training=training, description=str(path))
