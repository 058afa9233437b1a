"""`edgerl export`: checkpoint -> bundle (pt2, AOTInductor, ONNX, golden frames, manifest).

The bundle is built in a temporary sibling folder and renamed into place at
the end, so a failure half-way never leaves a half-written bundle, and an
existing bundle at the destination is replaced only by a complete one.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchrl.envs.utils import ExplorationType, set_exploration_type

from device.manifest import (
    MANIFEST,
    EnvSpec,
    Exploration,
    Manifest,
    TensorSpec,
    record_files,
    sha256_file,
    write_manifest,
)
from host.backends import eager_step, run_sequence
from host.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from host.envs import action_table, make_base_env
from host.frames import collect_frames
from host.policies import GraphPolicy, Policy, PolicyConfig, build_policy, io_names

ONNX_FILE = "policy.onnx"
PT2_FILE = "policy.pt2"
AOTI_FILE = "policy.aoti.pt2"
GOLDEN_FILE = "golden.npz"


class ExportError(Exception):
    """The export cannot proceed; the message says what to do."""


@dataclass(frozen=True)
class ExportConfig:
    """What `edgerl export` builds."""

    out: Path
    """Bundle folder to write (replaced atomically if it already is a bundle)."""
    source: Path | None = None
    """Run folder or checkpoint.pt from `edgerl train`."""
    untrained: bool = False
    """Export a freshly initialised network (tests and demos)."""
    kind: str = "dqn"
    """Policy for --untrained: dqn, stacked or lstm."""
    stochastic: bool = False
    """Export the e-greedy draw inside the graph (ExplorationType.RANDOM)."""
    epsilon: float | None = None
    """E-greedy rate of a stochastic export (default: the policy's)."""
    aoti: bool = True
    """Also compile an AOTInductor package (slow: tens of seconds)."""
    golden_frames: int = 8
    seed: int = 0
    env: EnvSpec = field(default_factory=EnvSpec)
    """Env spec of an --untrained export (a checkpoint brings its own)."""


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

    return {
        "torch": torch.__version__,
        "torchrl": torchrl.__version__,
        "tensordict": tensordict.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def _prepare_out(out: Path) -> None:
    if out.exists() and not (out.is_dir() and ((out / MANIFEST).is_file() or not any(out.iterdir()))):
        raise ExportError(f"{out} exists and is not a bundle; choose another --out or remove it")


def load_policy(cfg: ExportConfig) -> tuple[Policy, EnvSpec, dict[str, Any]]:
    """The policy to export, with its env spec and what the checkpoint says of its training."""
    if cfg.untrained:
        env_spec = cfg.env
        ids, _ = action_table(make_base_env(env_spec))
        policy = build_policy(PolicyConfig(kind=cfg.kind), len(ids), seed=cfg.seed)
        return policy, env_spec, {"frames_trained": 0, "untrained": True}
    if cfg.source is None:
        raise ExportError("give a run folder or checkpoint to export, or --untrained")
    ckpt = load_checkpoint(cfg.source)
    env_spec = ckpt["env"]
    ids, _ = action_table(make_base_env(env_spec))
    policy = build_policy(ckpt["policy"], len(ids))
    try:
        policy.qnet.load_state_dict(ckpt["weights"])
    except RuntimeError as err:
        raise ExportError(f"checkpoint weights do not fit a {ckpt['policy'].kind} policy: {_one_line(err)}") from err
    training = {k: v for k, v in ckpt.items() if k in ("frames", "wall_time_s", "eval", "hyperparameters", "algo")}
    training["frames_trained"] = int(ckpt.get("frames", 0))
    return policy, env_spec, training


def export_bundle(cfg: ExportConfig, say: Callable[[str], None] = print) -> Path:
    """Write a complete bundle to cfg.out and return its path."""
    started = time.perf_counter()
    out = Path(cfg.out)
    _prepare_out(out)
    policy, env_spec, training = load_policy(cfg)
    if cfg.epsilon is not None:
        policy.actor[-1].eps.fill_(cfg.epsilon)
        policy.epsilon = cfg.epsilon
    policy.actor.eval()
    mode = ExplorationType.RANDOM if cfg.stochastic else ExplorationType.DETERMINISTIC
    ids, meanings = action_table(make_base_env(env_spec))
    in_names, out_names = io_names(policy)
    graph = GraphPolicy(policy).eval()
    example = (torch.zeros(210, 160, 3, dtype=torch.uint8), *policy.initial_state())

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        save_checkpoint(tmp / CHECKPOINT, PolicyConfig(policy.kind, policy.epsilon), env_spec,
                        policy.qnet.state_dict(), frames=training["frames_trained"])
        backends: dict[str, Any] = {}
        with set_exploration_type(mode), torch.no_grad():
            t = time.perf_counter()
            program = torch.export.export(graph, example, strict=False)
            torch.export.save(program, tmp / PT2_FILE)
            backends["pt2"] = {"status": "ok", "file": PT2_FILE, "seconds": round(time.perf_counter() - t, 2)}
            say(f"  pt2   ok ({backends['pt2']['seconds']} s)")

            t = time.perf_counter()
            onnx_program = torch.onnx.export(graph, example, dynamo=True, input_names=in_names,
                                             output_names=out_names, verbose=False)
            onnx_program.save(str(tmp / ONNX_FILE), external_data=False)
            import onnx

            onnx.checker.check_model(str(tmp / ONNX_FILE), full_check=True)
            backends["onnx"] = {"status": "ok", "file": ONNX_FILE, "seconds": round(time.perf_counter() - t, 2)}
            say(f"  onnx  ok ({backends['onnx']['seconds']} s, onnx.checker passed)")

            backends["aoti"] = _compile_aoti(program, tmp / AOTI_FILE, example) if cfg.aoti else {"status": "skipped"}
            reason = backends["aoti"].get("reason")
            say(f"  aoti  {backends['aoti']['status']}" + (f": {reason}" if reason else ""))

        golden = _golden(policy, mode, env_spec, cfg)
        np.savez_compressed(tmp / GOLDEN_FILE, **golden)
        for name in (PT2_FILE, AOTI_FILE):
            if (tmp / name).is_file():
                backends["pt2" if name == PT2_FILE else "aoti"]["sha256"] = sha256_file(tmp / name)
        manifest = Manifest(
            policy_kind=policy.kind,
            env=env_spec,
            action_ids=ids,
            action_meanings=meanings,
            inputs=[TensorSpec(n, list(a.shape), str(a.numpy().dtype)) for n, a in zip(in_names, example, strict=True)],
            outputs=_output_specs(graph, example, out_names, mode),
            state=policy.state,
            exploration=Exploration("random" if cfg.stochastic else "deterministic",
                                    policy.epsilon if cfg.stochastic else 0.0),
            files=record_files(tmp, [ONNX_FILE, GOLDEN_FILE]),
            backends=backends,
            provenance={
                "git_commit": _git_commit(),
                "versions": _versions(),
                "training": training,
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "export_seconds": round(time.perf_counter() - started, 1),
                "host_only": [CHECKPOINT, PT2_FILE, AOTI_FILE],
            },
        )
        write_manifest(tmp, manifest)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"bundle {manifest.bundle_id} written to {out} in {time.perf_counter() - started:.1f} s")
    return out


def _compile_aoti(program: torch.export.ExportedProgram, path: Path, example: tuple) -> dict[str, Any]:
    """Compile and load back; a failure is recorded in one line, not raised (the other formats go on)."""
    t = time.perf_counter()
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


def _output_specs(graph: GraphPolicy, example: tuple, names: list[str], mode: ExplorationType) -> list[TensorSpec]:
    with set_exploration_type(mode), torch.no_grad():
        outs = graph(*example)
    return [TensorSpec(n, list(o.shape), str(o.numpy().dtype)) for n, o in zip(names, outs, strict=True)]


def _golden(policy: Policy, mode: ExplorationType, env: EnvSpec, cfg: ExportConfig) -> dict[str, np.ndarray]:
    """A few real frames along a played sequence, with the states fed and the eager outputs."""
    frames = collect_frames(env, 64, seed=cfg.seed + 1000, segment=32)
    with set_exploration_type(mode):
        trace = run_sequence(eager_step(policy), frames.pixels, frames.starts, policy_initial(policy),
                             reset_to_zeros=not policy.uses_is_init)
    pick = np.linspace(0, len(frames) - 1, cfg.golden_frames).astype(int)
    golden = {"pixels": frames.pixels[pick], "action": trace.actions[pick], "action_value": trace.values[pick]}
    for k, pair in enumerate(policy.state):
        states_in = trace.states_in[k][pick].copy()
        # The eager LSTM resets through is_init; the device resets to zeros.
        states_in[frames.starts[pick]] = 0.0
        golden[pair.input] = states_in
        golden[pair.output] = trace.states_out[k][pick]
    return golden


def policy_initial(policy: Policy) -> list[np.ndarray]:
    """Zero states as numpy arrays."""
    return [s.numpy() for s in policy.initial_state()]


def _swap_into_place(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old-{int(time.time() * 1000)}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def describe(cfg: ExportConfig) -> dict[str, Any]:
    """The config as JSON, for logs."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
