"""Where a policy to export comes from: the user's factory, a built-in network, or an `edgerl train` checkpoint.

Each source gives the same thing, a TorchRL actor and the env it acts in
(or an example input), and `host.bundle.export.export_policy` takes it from there.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase

from device.manifest import EnvSpec
from device.user_code import load_named
from host.checkpoint import load_checkpoint
from host.envs import single_env
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


KNOWN_NOISE = (
    r"The VecNorm class is to be deprecated",  # torchrl: the reference scripts still use VecNorm (v1)
    r"This class is to be deprecated in favor of",  # torchrl: the same, from VecNorm's constructor
    r"Nested TransformedEnvs are automatically unwrapped",  # torchrl: a batched env of TransformedEnvs
    r"The env passed to Collector is missing transforms",  # torchrl: a factory that trains first
    r"The environment .* is out of date",  # gymnasium: the scripts' v4 Atari ids
)
"""Third-party warnings a user's factory raises that say nothing about their export, silenced by message."""


@contextlib.contextmanager
def known_noise_silenced() -> Iterator[None]:
    """While the factory runs and the export steps its env: other warnings still show."""
    with warnings.catch_warnings():
        for message in KNOWN_NOISE:
            warnings.filterwarnings("ignore", message=message)
        yield


def load_factory(spec: str) -> Source:
    """Import FILE.py and call FUNC(): it returns (policy, env) or (policy, None, example)."""
    with known_noise_silenced():
        path, func_name, func = load_named(spec, "--from", "FUNC", ExportError)
    if not callable(func):
        raise ExportError(f"--from: {path} has no function {func_name}()")
    try:
        with known_noise_silenced():
            made = func()
    except Exception as err:  # the user's code
        raise ExportError(f"--from: {func_name}() failed: {type(err).__name__}: {err}") from err
    if not isinstance(made, tuple) or len(made) not in (2, 3):
        raise ExportError(f"--from: {func_name}() must return (policy, env) or (policy, None, example), "
                          f"not {type(made).__name__}")
    policy, env, *rest = made
    env = single_env(env, close=True)  # the workers of the user's batched env would keep the process alive
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
