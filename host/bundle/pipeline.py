"""The road from a policy to a bundle you can ship: write it, verify every backend, judge its int8 model.

    from host.bundle.pipeline import export_policy
    export_policy(policy, env, "bundle/")                    # a policy and the env it was trained in
    export_policy(policy, None, "bundle/", example=td)       # a policy fed by your own sensors

Each stage is its own module and knows nothing of the others: `export`
writes, `verify` compares backends with a reference, `quantize` judges
int8 by play. This module composes them, for the CLI and for Python users.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase

from device.manifest import INT8_FILE, EnvSpec, load_bundle
from host.bundle.export import ExportOptions, prepare_out, write_bundle
from host.bundle.quantize import QuantizeConfig, quantize_bundle, recheck_int8
from host.bundle.sources import Source, builtin_source, checkpoint_source, known_noise_silenced, load_factory
from host.bundle.suspects import snapshot, suspects
from host.bundle.verify import VerifyConfig, VerifyError, verify_bundle
from host.errors import ExportError


def export_policy(policy: TensorDictModuleBase, env: EnvBase | None, out: Path | str, *,
                  example: TensorDictBase | None = None, options: ExportOptions | None = None,
                  say: Callable[[str], None] = print, progress: bool = False) -> Path:
    """Write a complete bundle for `policy` to `out`, verify it against the eager policy, and return its path."""
    opts = options or ExportOptions()
    before = snapshot(env)
    written = write_bundle(policy, env, out, example=example, options=opts, say=say, progress=progress)
    if opts.verify:
        try:
            verify_bundle(VerifyConfig(written.path, steps=opts.verify_steps, seed=opts.seed, progress=progress),
                          say=say, eager=written.eager)
        except VerifyError as err:
            named = suspects(env, before)
            if named:
                raise VerifyError(f"{err}: {'; '.join(named)}") from None
            raise
    return written.path


def check_bundle(cfg: VerifyConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """`edgerl verify`: every backend against the reference, then the bundle's int8 model (if any) re-judged."""
    parity = verify_bundle(cfg, say=say)
    if INT8_FILE in load_bundle(cfg.bundle).files:
        recheck_int8(Path(cfg.bundle), say)
    return parity


@dataclass(frozen=True)
class ExportConfig:
    """What `edgerl export` builds, and from what."""

    out: Path
    """Bundle folder to write (replaced atomically if it already is a bundle)."""
    source: Path | None = None
    """Run folder or checkpoint.pt from `edgerl train`."""
    factory: str | None = None
    """FILE.py:FUNC returning (policy, env) or (policy, None, example)."""
    untrained: bool = False
    """Export a freshly initialised built-in network (tests and demos)."""
    network: str = "dqn"
    """Built-in network of an --untrained export: dqn, stacked or lstm."""
    stochastic: bool = False
    """Keep the policy's exploration inside the graph (ExplorationType.RANDOM)."""
    epsilon: float | None = None
    """E-greedy rate of a stochastic built-in export (default: the policy's)."""
    aoti: bool = False
    verify: bool = True
    verify_steps: int = 1000
    int8: bool = False
    """Also make policy.int8.onnx and judge it by play; a refusal raises QuantizeError (exit 3), fp32 written."""
    seed: int = 0
    """Initialisation seed of an --untrained export."""
    env: EnvSpec = field(default_factory=EnvSpec)
    """Env spec of an --untrained export (a checkpoint brings its own)."""




def resolve_source(cfg: ExportConfig) -> Source:
    """The policy, env (or example) and provenance an export config names."""
    if cfg.epsilon is not None and not cfg.stochastic:
        raise ExportError("--epsilon is the e-greedy rate of a stochastic export: give --stochastic too")
    if cfg.factory:
        if cfg.epsilon is not None:
            raise ExportError("--epsilon sets the rate of edgerl's built-in networks; a --from policy explores as its "
                              "own modules say (put TorchRL's EGreedyModule, with its eps, in the actor you return)")
        return load_factory(cfg.factory)
    if cfg.untrained:
        return builtin_source(cfg.network, cfg.env, seed=cfg.seed, epsilon=cfg.epsilon)
    if cfg.source is not None:
        return checkpoint_source(cfg.source, epsilon=cfg.epsilon)
    raise ExportError("give a run folder or checkpoint to export, --from FILE.py:FUNC, or --untrained")


def export_bundle(cfg: ExportConfig, say: Callable[[str], None] = print, progress: bool = False) -> Path:
    """`edgerl export`: resolve the source, write and verify the bundle, then make and judge int8 if asked."""
    prepare_out(Path(cfg.out))
    with known_noise_silenced():
        return _export_bundle(cfg, say, progress)


def _export_bundle(cfg: ExportConfig, say: Callable[[str], None], progress: bool) -> Path:
    src = resolve_source(cfg)
    opts = ExportOptions(exploration="random" if cfg.stochastic else "deterministic", aoti=cfg.aoti,
                         verify=cfg.verify, verify_steps=cfg.verify_steps, label=src.label, training=src.training,
                         source=src.description)
    out = export_policy(src.policy, src.env, cfg.out, example=src.example, options=opts, say=say, progress=progress)
    if cfg.int8:
        say(f"quantizing {out} to int8 and checking how it plays")
        quantize_bundle(QuantizeConfig(out), say)
    return out
