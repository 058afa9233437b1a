"""Export any TorchRL actor to a bundle: pt2, AOTInductor, ONNX, golden inputs, manifest; then verify it.

    from host.export import export_policy
    export_policy(policy, env, "bundle/")                    # a policy and the env it was trained in
    export_policy(policy, None, "bundle/", example=td)       # a policy fed by your own sensors

Every source goes through `export_policy`: a user's `--from FILE.py:FUNC`,
edgerl's built-in networks and `edgerl train` checkpoints (`sources.py`
turns each into a policy and its env). The bundle is built in a temporary
sibling folder and renamed into place at the end, so a failure half-way
never leaves a half-written bundle, and an existing bundle at the
destination is replaced only by a complete one.
"""

from __future__ import annotations

import logging
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from device.manifest import (
    AOTI_FILE,
    EPISODE_START_INPUT,
    GOLDEN_FILE,
    HOST_ONLY_FILES,
    MANIFEST,
    MODEL_FILE,
    PT2_FILE,
    EnvSpec,
    Exploration,
    Manifest,
    record_files,
    sha256_file,
    write_manifest,
)
from host.envs import action_table, env_spec_from
from host.errors import ExportError
from host.graph import GraphPlan, PolicyGraph, plan_graph, state_keys
from host.policies import epsilon_of
from host.rollout import RawTap, Sequence, Trace, eager_env_rollout, eager_example_rollout, states_fed


@dataclass(frozen=True)
class ExportOptions:
    """How `export_policy` builds a bundle."""

    exploration: str = "deterministic"
    """deterministic (argmax / mode) or random (the policy's own exploration, e.g. e-greedy, inside the graph)."""
    aoti: bool = True
    """Also compile an AOTInductor package (host-only; tens of seconds)."""
    verify: bool = True
    """Check ONNX, pt2 and AOTInductor against the eager policy on real inputs afterwards."""
    verify_steps: int = 1000
    """Steps of real play (or example-driven input) the verification runs through every backend."""
    golden_frames: int = 8
    seed: int = 1
    kind: str = "custom"
    """A label for the manifest and the bundle id: a built-in's name or the user's factory."""
    training: dict[str, Any] | None = None
    """What is known of the policy's training (frames, wall time...), recorded in the provenance."""
    source: str | None = None
    """Where the policy came from (--from FILE.py:FUNC, a run folder), recorded in the provenance."""


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:240]}" if text else type(err).__name__


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import tensordict
    import torchrl

    return {"torch": torch.__version__, "torchrl": torchrl.__version__, "tensordict": tensordict.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def prepare_out(out: Path) -> None:
    """Refuse to overwrite a folder that is not a bundle."""
    if out.exists() and not (out.is_dir() and ((out / MANIFEST).is_file() or not any(out.iterdir()))):
        raise ExportError(f"{out} exists and is not a bundle; choose another --out or remove it")


def _mode(exploration: str) -> ExplorationType:
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
    from host.envs import base_env

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
    from torchrl.modules.utils import get_primers_from_module

    primer = get_primers_from_module(policy, warn=False)
    if primer is not None:
        for key, spec in primer.primers.items(include_nested=True, leaves_only=True):
            if key in carried and key not in raw.keys(include_nested=True):
                raw.set(key, spec.zero())
    return raw


def build_graph(policy: TensorDictModuleBase, env: EnvBase | None, example: TensorDictBase | None,
                mode: ExplorationType) -> tuple[PolicyGraph, tuple[torch.Tensor, ...]]:
    """The graph of an eval-mode policy fed by its env's raw observations (or the example), and one input for it."""
    raw = _raw_example(policy, env, example)
    with set_exploration_type(mode):
        return plan_graph(policy, raw, _is_one_hot(env), env)


def export_policy(policy: TensorDictModuleBase, env: EnvBase | None, out: Path | str, *,
                  example: TensorDictBase | None = None, options: ExportOptions | None = None,
                  say: Callable[[str], None] = print, progress: bool = False) -> Path:
    """Write a complete, verified bundle for `policy` to `out` and return its path."""
    opts = options or ExportOptions()
    started = time.perf_counter()
    out = Path(out)
    prepare_out(out)
    if not isinstance(policy, TensorDictModuleBase):
        raise ExportError(f"the policy must be a TensorDict module (TensorDictModule, TensorDictSequential, "
                          f"QValueActor, ProbabilisticActor...), not {type(policy).__name__}")
    mode = _mode(opts.exploration)
    policy = policy.eval()
    env_spec = env_spec_from(env) if env is not None else None
    ids, meanings = action_table(env) if env_spec is not None else ([], [])
    graph, args = build_graph(policy, env, example, mode)
    plan = graph.plan
    if env_spec is not None and len(plan.observations) != 1:
        raise ExportError(f"a game policy must read only the screen; it reads {[s.key for s in plan.observations]}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        backends = _export_backends(graph, args, plan, tmp, mode, opts, say)
        say(f"  rolling out {opts.verify_steps} steps of {'the env' if env is not None else 'example input'} "
            "with the eager policy")
        seq, ref = reference(policy, env, example, plan, opts.verify_steps, opts.seed, mode, progress)
        np.savez_compressed(tmp / GOLDEN_FILE, **golden(seq, ref, plan, opts.golden_frames))
        for key, name in (("pt2", PT2_FILE), ("aoti", AOTI_FILE)):
            if (tmp / name).is_file():
                backends[key]["sha256"] = sha256_file(tmp / name)
        epsilon = epsilon_of(policy) if mode == ExplorationType.RANDOM else 0.0
        manifest = Manifest(
            policy_kind=opts.kind,
            env=env_spec,
            action_ids=ids,
            action_meanings=meanings,
            inputs=[s.spec for s in plan.inputs],
            outputs=[s.spec for s in plan.outputs],
            state=plan.state,
            exploration=Exploration(opts.exploration, epsilon),
            observations=[s.spec.name for s in plan.observations],
            episode_start_input=plan.episode_start.spec.name if plan.episode_start else None,
            values_output=plan.values.spec.name if plan.values else None,
            files=record_files(tmp, [MODEL_FILE, GOLDEN_FILE]),
            backends=backends,
            provenance={
                "git_commit": _git_commit(),
                "versions": _versions(),
                "source": opts.source,
                "training": opts.training or {"frames_trained": None},
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "export_seconds": round(time.perf_counter() - started, 1),
                "host_only": list(HOST_ONLY_FILES),
            },
        )
        write_manifest(tmp, manifest)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"bundle {manifest.bundle_id} written to {out} in {time.perf_counter() - started:.1f} s")
    if opts.verify:
        from host.verify import VerifyConfig, verify_bundle

        verify_bundle(VerifyConfig(out, steps=opts.verify_steps, seed=opts.seed, progress=progress), say=say,
                      eager=(seq, ref))
    return out


def _export_backends(graph: PolicyGraph, args: tuple, plan: GraphPlan, tmp: Path, mode: ExplorationType,
                     opts: ExportOptions, say: Callable[[str], None]) -> dict[str, Any]:
    backends: dict[str, Any] = {}
    in_names = [s.spec.name for s in plan.inputs]
    out_names = [s.spec.name for s in plan.outputs]
    with set_exploration_type(mode), torch.no_grad():
        t = time.perf_counter()
        try:
            program = torch.export.export(graph, args, strict=False)
        except Exception as err:  # torch.export names the unsupported construct; pass it on in one line
            raise ExportError(f"torch.export cannot capture the policy: {_one_line(err)}") from err
        torch.export.save(program, tmp / PT2_FILE)
        backends["pt2"] = {"status": "ok", "file": PT2_FILE, "seconds": round(time.perf_counter() - t, 2)}
        say(f"  pt2   ok ({backends['pt2']['seconds']} s)")

        t = time.perf_counter()
        try:
            onnx_program = torch.onnx.export(graph, args, dynamo=True, input_names=in_names,
                                             output_names=out_names, verbose=False)
            onnx_program.save(str(tmp / MODEL_FILE), external_data=False)
            import onnx

            onnx.checker.check_model(str(tmp / MODEL_FILE), full_check=True)
        except Exception as err:  # the ONNX exporter raises many types; the board needs this file
            raise ExportError(f"ONNX export failed: {_onnx_reason(err)}") from err
        backends["onnx"] = {"status": "ok", "file": MODEL_FILE, "seconds": round(time.perf_counter() - t, 2)}
        say(f"  onnx  ok ({backends['onnx']['seconds']} s, onnx.checker passed)")

        if opts.aoti:
            say("  aoti  compiling (AOTInductor, ~15 s)...")
        backends["aoti"] = compile_aoti(program, tmp / AOTI_FILE, args) if opts.aoti else {"status": "skipped"}
        reason = backends["aoti"].get("reason")
        say(f"  aoti  {backends['aoti']['status']}" + (f": {reason}" if reason else ""))
    return backends


def _onnx_reason(err: BaseException) -> str:
    """The exporter's root cause in one line: usually an operator ONNX has no translation for."""
    import re

    seen: BaseException | None = err
    while seen is not None:
        found = re.search(r"No ONNX function found for <OpOverload\(op='([\w.]+)'", str(seen))
        if found:
            return (f"ONNX has no translation for {found.group(1)}; replace that layer in the policy with one ONNX "
                    "supports (e.g. a fixed-size pooling instead of an adaptive one)")
        seen = seen.__cause__ or seen.__context__
    return _one_line(err)


def compile_aoti(program: torch.export.ExportedProgram, path: Path, example: tuple) -> dict[str, Any]:
    """Compile and load back; a failure is recorded in one line, not raised (the other formats go on)."""
    t = time.perf_counter()
    # On a CPU-only host torch logs "No CUDA runtime is found" while it sets the compiler up: not the user's concern.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    except Exception as err:  # a compiler or toolchain problem: record, don't abort the export
        path.unlink(missing_ok=True)
        return {"status": "failed", "stage": "compile", "reason": _one_line(err)}
    try:
        runner = torch._inductor.aoti_load_package(str(path))
        runner(*example)
    except Exception as err:  # e.g. the tutorial's libstdc++ version error at load time
        path.unlink(missing_ok=True)
        return {"status": "failed", "stage": "load", "reason": _one_line(err)}
    return {"status": "ok", "file": path.name, "seconds": round(time.perf_counter() - t, 2)}


def reference(policy: TensorDictModuleBase, env: EnvBase | None, example: TensorDictBase | None, plan: GraphPlan,
              steps: int, seed: int, mode: ExplorationType, progress: bool = False) -> tuple[Sequence, Trace]:
    """Real inputs and the eager policy's outputs on them (the env's own stepping, or around the example)."""
    bar = None
    if progress:
        from tqdm import tqdm

        def bar(it):  # noqa: ANN001, ANN202
            return tqdm(it, desc=" eager", unit="step", leave=False)
    if env is not None:
        return eager_env_rollout(policy, env, plan, steps, seed, mode, progress=bar)
    return eager_example_rollout(policy, example, plan, steps, seed, mode, progress=bar)


def golden(seq: Sequence, ref: Trace, plan: GraphPlan, count: int) -> dict[str, np.ndarray]:
    """A few steps of the reference: every graph input as fed and every eager output, by graph name."""
    pick = np.unique(np.linspace(0, len(seq) - 1, count).astype(int))
    # Prefer steps that carry state: the first frames of an episode test little.
    data = {name: arr[pick] for name, arr in seq.inputs.items()}
    for name, arr in states_fed(ref, seq, plan.state).items():
        data[name] = arr[pick]
    if plan.episode_start is not None:
        shape = plan.episode_start.spec.shape
        data[plan.episode_start.spec.name] = np.stack([np.full(shape, s, dtype=bool) for s in seq.starts[pick]])
    for name, arr in ref.outputs.items():
        data[name] = arr[pick]
    return data


def swap_into_place(tmp: Path, out: Path) -> None:
    """Replace `out` by the finished folder `tmp` (rename; the old bundle is removed after)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{int(time.time() * 1000)}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


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
    kind: str = "dqn"
    """Built-in policy for --untrained: dqn, stacked or lstm."""
    stochastic: bool = False
    """Keep the policy's exploration inside the graph (ExplorationType.RANDOM)."""
    epsilon: float | None = None
    """E-greedy rate of a stochastic built-in export (default: the policy's)."""
    aoti: bool = True
    verify: bool = True
    verify_steps: int = 1000
    seed: int = 0
    """Initialisation seed of an --untrained export."""
    env: EnvSpec = field(default_factory=EnvSpec)
    """Env spec of an --untrained export (a checkpoint brings its own)."""


def export_bundle(cfg: ExportConfig, say: Callable[[str], None] = print, progress: bool = False) -> Path:
    """Resolve the config's source to a policy and its env, then `export_policy` it."""
    from host.sources import builtin_source, checkpoint_source, load_factory

    prepare_out(Path(cfg.out))
    if cfg.factory:
        src = load_factory(cfg.factory)
    elif cfg.untrained:
        src = builtin_source(cfg.kind, cfg.env, seed=cfg.seed, epsilon=cfg.epsilon)
    elif cfg.source is not None:
        src = checkpoint_source(cfg.source, epsilon=cfg.epsilon)
    else:
        raise ExportError("give a run folder or checkpoint to export, --from FILE.py:FUNC, or --untrained")
    opts = ExportOptions(exploration="random" if cfg.stochastic else "deterministic", aoti=cfg.aoti,
                         verify=cfg.verify, verify_steps=cfg.verify_steps, kind=src.kind, training=src.training,
                         source=src.description)
    return export_policy(src.policy, src.env, cfg.out, example=src.example, options=opts, say=say, progress=progress)
