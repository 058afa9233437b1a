"""Write any TorchRL actor as a bundle: pt2, AOTInductor, ONNX, golden inputs, manifest.

Every source reaches `write_bundle` through `pipeline.export_policy`, which
verifies what was written: a user's `--from FILE.py:FUNC`, edgerl's
built-in networks and `edgerl train` checkpoints (`sources.py` turns each
into a policy and its env). The bundle is built in a temporary
sibling folder and renamed into place at the end, so a failure half-way
never leaves a half-written bundle, and an existing bundle at the
destination is replaced only by a complete one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import shutil
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from device.manifest import (
    AOTI_FILE,
    GOLDEN_FILE,
    HOST_ONLY_FILES,
    MANIFEST,
    MODEL_FILE,
    PT2_FILE,
    ActionSpec,
    EnvSpec,
    Exploration,
    Manifest,
    creation_mode,
    record_files,
    sha256_file,
    write_manifest,
)
from host.bundle.action_bounds import action_spec
from host.bundle.graph import GraphPlan, PolicyGraph
from host.bundle.onnx_export import onnx_program
from host.bundle.rollout import Sequence, Trace, states_fed
from host.bundle.tracing import build_graph, exploration_type, frozen_statistics, reference
from host.bundle.transforms import training_only
from host.envs import action_table, env_spec_from, single_env
from host.errors import ExportError, one_line
from host.policies import epsilon_of, explores


@dataclass(frozen=True)
class ExportOptions:
    """How a bundle is built (`write_bundle`) and checked afterwards (`pipeline.export_policy`)."""

    exploration: str = "deterministic"
    """deterministic (argmax / mode) or random (the policy's own exploration, e.g. e-greedy, inside the graph)."""
    aoti: bool = False
    """Also compile an AOTInductor package: host-only (built for this CPU; the board runs ONNX), and ~25 s on top
    of a ~16 s Atari export with verify, so asked for, not paid by default."""
    verify: bool = True
    """Check ONNX, pt2 and AOTInductor against the eager policy on real inputs afterwards."""
    verify_steps: int = 1000
    """Steps of real play (or example-driven input) the verification runs through every backend."""
    golden_frames: int = 8
    seed: int = 1
    label: str = "custom"
    """Names the policy in the manifest and the bundle id: a built-in's name or the user's factory."""
    training: dict[str, Any] | None = None
    """What is known of the policy's training (frames, wall time...), recorded in the provenance."""
    source: str | None = None
    """Where the policy came from (--from FILE.py:FUNC, a run folder), recorded in the provenance."""


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


@dataclass
class Written:
    """A bundle just written, and the eager reference it was made from (what verify compares with)."""

    path: Path
    manifest: Manifest
    eager: tuple[Sequence, Trace]


def _check_policy(policy: object) -> None:
    if not isinstance(policy, TensorDictModuleBase):
        raise ExportError(f"the policy must be a TensorDict module (TensorDictModule, TensorDictSequential, "
                          f"QValueActor, ProbabilisticActor...), not {type(policy).__name__}")


def write_bundle(policy: TensorDictModuleBase, env: EnvBase | None, out: Path | str, *,
                 example: TensorDictBase | None = None, options: ExportOptions | None = None,
                 say: Callable[[str], None] = print, progress: bool = False) -> Written:
    """Write a complete bundle for `policy` to `out` (not yet verified: `pipeline.export_policy` does both)."""
    env = single_env(env)  # a batched env: its one copy (the user's env, workers and all, is left as it was)
    with frozen_statistics(env):
        return _write_bundle(policy, env, Path(out), example, options or ExportOptions(), say, progress)


def _write_bundle(policy: TensorDictModuleBase, env: EnvBase | None, out: Path, example: TensorDictBase | None,
                  opts: ExportOptions, say: Callable[[str], None], progress: bool) -> Written:
    started = time.perf_counter()
    prepare_out(out)
    _check_policy(policy)
    mode = exploration_type(opts.exploration)
    policy = policy.eval()
    env_spec = env_spec_from(env) if env is not None else None
    graph, args = build_graph(policy, env, example, mode)
    plan = graph.plan
    if mode == ExplorationType.RANDOM and not explores(policy):
        raise ExportError(f"--stochastic: {type(policy).__name__} has nothing random to export (no distribution to "
                          "sample, no EGreedyModule): export it without --stochastic, or add TorchRL's EGreedyModule")
    if env_spec is not None and len(plan.observations) != 1:
        raise ExportError(f"a game policy must read only the screen; it reads {[s.key for s in plan.observations]}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    tmp.chmod(creation_mode(folder=True))  # the bundle folder as mkdir makes one, not mkdtemp's 0700
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
        action = action_spec(env, policy, int(np.prod(plan.action.spec.shape, dtype=np.int64)))
        manifest = _manifest(plan, env, env_spec, opts, epsilon, backends, tmp, started, action)
        if env is not None:
            manifest.provenance["env_observations"] = env_observations(env, policy)
        write_manifest(tmp, manifest)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"bundle {manifest.bundle_id} written to {out} in {time.perf_counter() - started:.1f} s")
    return Written(out, manifest, (seq, ref))


def env_observations(env: EnvBase, policy: TensorDictModuleBase) -> dict[str, list[int]]:
    """The shapes of what the policy reads from its env, after the env's transforms ("a.b" for nested keys).

    A recording keeps the raw game, not these: `load_episodes` regenerates them with the env it is given, and
    checks that env makes what the bundle's policy was exported reading (another Resize would not).
    """
    spec = env.observation_spec
    names = spec.keys(True, True)
    return {".".join(key) if isinstance(key, tuple) else key: list(spec[key].shape)
            for key in policy.in_keys if key in names}


def _manifest(plan: GraphPlan, env: EnvBase | None, env_spec: EnvSpec | None, opts: ExportOptions, epsilon: float,
              backends: dict[str, Any], folder: Path, started: float, action: ActionSpec | None) -> Manifest:
    ids, meanings = action_table(env) if env_spec is not None else ([], [])
    return Manifest(
        policy_kind=opts.label,
        env=env_spec,
        action_ids=ids,
        action_meanings=meanings,
        inputs=[s.spec for s in plan.inputs],
        outputs=[s.spec for s in plan.outputs],
        state=plan.state,
        exploration=Exploration(opts.exploration, epsilon),
        action=action,
        observations=[s.spec.name for s in plan.observations],
        episode_start_input=plan.episode_start.spec.name if plan.episode_start else None,
        values_output=plan.values.spec.name if plan.values else None,
        sampled_from=[s.spec.name for s in plan.params],
        files=record_files(folder, [MODEL_FILE, GOLDEN_FILE]),
        backends=backends,
        provenance={
            "git_commit": _git_commit(),
            "versions": _versions(),
            "source": opts.source,
            "training": opts.training or {"frames_trained": None},
            **({"normalization": plan.normalization} if plan.normalization else {}),
            **({"training_only": dropped} if (dropped := training_only(env)) else {}),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "export_seconds": round(time.perf_counter() - started, 1),
            "host_only": list(HOST_ONLY_FILES),
        },
    )


def _export_backends(graph: PolicyGraph, args: tuple, plan: GraphPlan, tmp: Path, mode: ExplorationType,
                     opts: ExportOptions, say: Callable[[str], None]) -> dict[str, Any]:
    backends: dict[str, Any] = {}
    in_names = [s.spec.name for s in plan.inputs]
    out_names = [s.spec.name for s in plan.outputs]
    with set_exploration_type(mode), torch.no_grad():
        t = time.perf_counter()
        try:
            program = _quiet_export(graph, args)
        except Exception as err:  # torch.export names the unsupported construct; pass it on in one line
            raise ExportError(f"torch.export cannot capture the policy{_culprit(err)}: {one_line(err)}; "
                              "rewrite that step without a Python branch on tensor values") from err
        torch.export.save(program, tmp / PT2_FILE)
        backends["pt2"] = {"status": "ok", "file": PT2_FILE, "seconds": round(time.perf_counter() - t, 2)}
        say(f"  pt2   ok ({backends['pt2']['seconds']} s)")

        t = time.perf_counter()
        try:
            exported = onnx_program(program, args, input_names=in_names, output_names=out_names, verbose=False)
            exported.save(str(tmp / MODEL_FILE), external_data=False)
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


def _quiet_export(graph: PolicyGraph, args: tuple) -> torch.export.ExportedProgram:
    """torch.export, without the partial graph it prints to stderr on failure (the error says it in one line)."""
    shapes = logging.getLogger("torch.fx.experimental.symbolic_shapes")
    level = shapes.level
    shapes.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return torch.export.export(graph, args, strict=False)
    finally:
        shapes.setLevel(level)


def _culprit(err: BaseException) -> str:
    """' in Module.method (file:line)': the innermost frame of the failure outside torch and edgerl's graph."""
    frames = [f for f in traceback.walk_tb(err.__traceback__)
              if "/torch/" not in f[0].f_code.co_filename and "host/bundle" not in f[0].f_code.co_filename]
    if not frames:
        return ""
    frame, line = frames[-1]
    owner = frame.f_locals.get("self")
    where = f"{Path(frame.f_code.co_filename).name}:{line}"
    name = f"{type(owner).__name__}.{frame.f_code.co_name}" if owner is not None else frame.f_code.co_name
    return f" in {name} ({where})"


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
    return one_line(err)


def compile_aoti(program: torch.export.ExportedProgram, path: Path, example: tuple) -> dict[str, Any]:
    """Compile and load back; a failure is recorded in one line, not raised (the other formats go on)."""
    t = time.perf_counter()
    # On a CPU-only host torch logs "No CUDA runtime is found" while it sets the compiler up: not the user's concern.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    except Exception as err:  # a compiler or toolchain problem: record, don't abort the export
        path.unlink(missing_ok=True)
        return {"status": "failed", "stage": "compile", "reason": one_line(err)}
    try:
        runner = torch._inductor.aoti_load_package(str(path))
        runner(*example)
    except Exception as err:  # e.g. the tutorial's libstdc++ version error at load time
        path.unlink(missing_ok=True)
        return {"status": "failed", "stage": "load", "reason": one_line(err)}
    return {"status": "ok", "file": path.name, "seconds": round(time.perf_counter() - t, 2)}


def golden(seq: Sequence, ref: Trace, plan: GraphPlan, count: int) -> dict[str, np.ndarray]:
    """A few steps of the reference: every graph input as fed and every eager output, by graph name."""
    pick = np.unique(np.linspace(0, len(seq) - 1, count).astype(int))
    # Evenly spaced, the first step (an episode start) included: the golden inputs hold a fresh state as well as
    # states carried for many steps, with the state inputs the board will feed at each.
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
