"""`edgerl verify`: every exported form of a bundle against a reference, stepped through time on real inputs.

The reference is the eager TorchRL policy when it is at hand (right after
export, or rebuilt with `--from FILE.py:FUNC`), stepped by TorchRL itself
in the user's env; otherwise the bundle's own torch.export program. Each
backend (ONNX, pt2, AOTInductor) is stepped as the board steps it: states
from zeros and `is_init` at each episode start, its own outputs after.

Deterministic bundles must agree on 100 % of actions with max |diff| of
every float output (values, logits, next states) within `atol`. Stochastic
bundles draw their action inside the graph: for an e-greedy policy the
rate at which each backend's action differs from its own greedy action is
tested against the declared rate (a two-sided binomial z-test); values and
states must still match.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from device.manifest import MANIFEST, Manifest, load_bundle, write_manifest
from device.policy import session_options
from device.selftest import read_golden
from host.bundle.rollout import Sequence, Trace, graph_rollout, step_bar
from host.bundle.screens import collect_screens
from host.bundle.sources import load_factory
from host.bundle.tracing import build_graph, exploration_type, frozen_statistics, reference
from host.errors import VerifyError


@dataclass(frozen=True)
class VerifyConfig:
    """What `edgerl verify` checks."""

    bundle: Path
    steps: int = 1000
    """Real steps (env frames, or example-driven inputs) run through every backend."""
    seed: int = 1
    atol: float = 1e-4
    z_max: float = 4.5
    """Largest |z| accepted for a stochastic bundle's exploration rate."""
    progress: bool = True
    source: str | None = None
    """FILE.py:FUNC that rebuilds the eager policy (and its env) to verify against."""


def onnx_step(path: Path, manifest: Manifest) -> Callable[[dict], dict]:
    """onnxruntime on the ONNX file, with the device's session options."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises several unrelated types for a graph it cannot run
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VerifyError(f"onnxruntime {ort.__version__} cannot run {path.name} ({reason}); the board could not "
                          "either: do not ship this bundle, and report the graph to edgerl") from err
    names = [t.name for t in manifest.outputs]
    return lambda feed: dict(zip(names, session.run(names, feed), strict=True))


def module_step(module: Callable, manifest: Manifest) -> Callable[[dict], dict]:
    """An exported module (ExportedProgram.module() or an AOTInductor runner), positional I/O."""
    in_names = [t.name for t in manifest.inputs]
    out_names = [t.name for t in manifest.outputs]

    def step(feed: dict) -> dict:
        with torch.no_grad():
            outs = module(*[torch.from_numpy(np.array(feed[n])) for n in in_names])
        return {n: o.detach().numpy().copy() for n, o in zip(out_names, outs, strict=True)}

    return step


def _compare(ref: Trace, got: Trace, manifest: Manifest) -> dict[str, Any]:
    action = manifest.action_output
    float_diffs = {}
    for name, r in ref.outputs.items():
        if name == action and manifest.sampled_from:
            continue  # a draw: the distribution it is drawn from (sampled_from) is compared instead
        if np.issubdtype(r.dtype, np.floating):
            float_diffs[name] = float(np.abs(r - got.outputs[name]).max(initial=0.0))
    state_names = {p.output for p in manifest.state}
    if np.issubdtype(ref.outputs[action].dtype, np.floating):
        agreement = float((np.abs(ref.outputs[action] - got.outputs[action]).reshape(len(ref.outputs[action]), -1)
                           .max(-1) <= 1e-4).mean())
    else:
        agreement = float((ref.outputs[action] == got.outputs[action]).mean())
    return {
        "action_agreement": agreement,
        "max_abs_diff_values": max((d for n, d in float_diffs.items() if n not in state_names), default=0.0),
        "max_abs_diff_state": max((d for n, d in float_diffs.items() if n in state_names), default=0.0),
    }


def _first_difference(ref: Trace, got: Trace, manifest: Manifest, starts: np.ndarray, atol: float) -> str:
    """Where the outputs first part, said as a person reads it: the step, and whether an episode starts there."""
    rows = np.zeros(len(starts), dtype=bool)
    for name, r in ref.outputs.items():
        if name == manifest.action_output and manifest.sampled_from:
            continue
        g = got.outputs[name]
        apart = np.abs(r - g) > atol if np.issubdtype(r.dtype, np.floating) else r != g
        rows |= apart.reshape(len(rows), -1).any(-1)
    if not rows.any():
        return ""
    first = int(rows.argmax())
    if not (rows & ~starts.astype(bool)).any():
        return f"they differ only at episode starts (first at step {first})"
    return f"they first differ at step {first}, {'an episode start' if starts[first] else 'mid-episode'}"


def _exploration_check(trace: Trace, manifest: Manifest, z_max: float) -> dict[str, Any]:
    values = trace.outputs[manifest.values_output]
    epsilon = manifest.exploration.epsilon
    n_actions = values.shape[-1]
    greedy = values.argmax(-1)
    n = len(greedy)
    off = int((trace.outputs[manifest.action_output] != greedy).sum())
    expected = epsilon * (n_actions - 1) / n_actions
    sd = math.sqrt(max(n * expected * (1 - expected), 1e-12))
    z = (off - n * expected) / sd
    return {"off_greedy_rate": off / n, "expected_rate": expected, "z": z, "ok": abs(z) <= z_max}


def _pt2_reference(bundle: Path, manifest: Manifest, cfg: VerifyConfig) -> tuple[Sequence, Trace]:
    """No eager policy at hand: real inputs from the game (or around the golden ones), pt2 as the reference."""
    pt2 = manifest.backends.get("pt2", {})
    if pt2.get("status") != "ok" or not (bundle / pt2.get("file", "")).is_file():
        raise VerifyError("this bundle has no torch.export program to verify against; pass --from FILE.py:FUNC "
                          "to rebuild the eager policy")
    if manifest.env is not None:
        played = collect_screens(manifest.env, cfg.steps, seed=cfg.seed)
        seq = Sequence({manifest.screen_input: played.screens}, played.starts)
    else:
        golden = read_golden(bundle / manifest.golden_file, manifest.observations)
        rng = np.random.default_rng(cfg.seed)
        inputs = {}
        for name in manifest.observations:
            base = golden[name][rng.integers(0, len(golden[name]), cfg.steps)]
            if np.issubdtype(base.dtype, np.floating):
                base = base + rng.normal(0, max(float(base.std()), 1e-3), base.shape).astype(base.dtype) * 0.1
            inputs[name] = base
        seq = Sequence(inputs, np.arange(cfg.steps) % 250 == 0)
    ref = _run(module_step(torch.export.load(bundle / pt2["file"]).module(), manifest), seq, manifest, cfg, "pt2")
    return seq, ref


def _run(step: Callable, seq: Sequence, manifest: Manifest, cfg: VerifyConfig, label: str) -> Trace:
    start = None
    if manifest.episode_start_input:
        spec = next(t for t in manifest.inputs if t.name == manifest.episode_start_input)
        start = (spec.name, spec.shape)
    bar = step_bar(label, cfg.progress)
    return graph_rollout(step, seq, [t.name for t in manifest.inputs], manifest.state, start, progress=bar)


def eager_from_source(source: str, manifest: Manifest, cfg: VerifyConfig) -> tuple[Sequence, Trace]:
    """Rebuild the eager policy with the user's factory and step it in its env (or around its example)."""
    made = load_factory(source)
    mode = exploration_type(manifest.exploration.mode)
    with frozen_statistics(made.env):
        graph, _ = build_graph(made.policy.eval(), made.env, made.example, mode)
        names = [s.spec.name for s in graph.plan.inputs] + [s.spec.name for s in graph.plan.outputs]
        declared = [t.name for t in manifest.inputs] + [t.name for t in manifest.outputs]
        if names != declared:
            raise VerifyError(f"{source} builds a policy with I/O {names}, but the bundle has {declared}; "
                              "pass the factory the bundle was exported from")
        return reference(made.policy, made.env, made.example, graph.plan, cfg.steps, cfg.seed, mode,
                         cfg.progress)


def verify_bundle(cfg: VerifyConfig, say: Callable[[str], None] = print,
                  eager: tuple[Sequence, Trace] | None = None) -> dict[str, Any]:
    """Run every backend, record the figures in the manifest, raise VerifyError on disagreement."""
    bundle = Path(cfg.bundle)
    manifest = load_bundle(bundle)
    if eager is not None:
        reference_name, (seq, ref) = "eager", eager
    elif cfg.source:
        reference_name, (seq, ref) = "eager", eager_from_source(cfg.source, manifest, cfg)
    else:
        reference_name, (seq, ref) = "pt2", _pt2_reference(bundle, manifest, cfg)

    steps: dict[str, Callable] = {"onnx": onnx_step(bundle / manifest.model_file, manifest)}
    pt2 = manifest.backends.get("pt2", {})
    if pt2.get("status") == "ok" and reference_name != "pt2":
        steps["pt2"] = module_step(torch.export.load(bundle / pt2["file"]).module(), manifest)
    aoti = manifest.backends.get("aoti", {})
    if aoti.get("status") == "ok":
        steps["aoti"] = module_step(torch._inductor.aoti_load_package(str(bundle / aoti["file"])), manifest)

    stochastic = manifest.exploration.mode == "random"
    egreedy = stochastic and manifest.exploration.epsilon > 0 and manifest.values_output is not None
    results: dict[str, Any] = {}
    for name, step in steps.items():
        if stochastic:
            torch.manual_seed(cfg.seed)
        trace = _run(step, seq, manifest, cfg, name)
        figures = _compare(ref, trace, manifest)
        within = figures["max_abs_diff_values"] <= cfg.atol and figures["max_abs_diff_state"] <= cfg.atol
        if egreedy:
            figures["exploration"] = _exploration_check(trace, manifest, cfg.z_max)
            figures["ok"] = figures["exploration"]["ok"] and within
        elif stochastic:
            figures["ok"] = within  # sampled actions: only the distribution's inputs can be compared
        else:
            figures["ok"] = figures["action_agreement"] == 1.0 and within
        if not figures["ok"]:
            figures["where"] = _first_difference(ref, trace, manifest, seq.starts, cfg.atol)
        results[name] = figures
    if egreedy and reference_name == "eager":
        results["eager"] = {"exploration": _exploration_check(ref, manifest, cfg.z_max)}
    _say_results(results, manifest, stochastic, reference_name, say)

    manifest.parity = {
        "reference": reference_name,
        "frames": len(seq),
        "episode_starts": int(seq.starts.sum()),
        "mode": manifest.exploration.mode,
        "atol": cfg.atol,
        "backends": results,
        "ok": all(f.get("ok", True) for f in results.values()),
    }
    write_manifest(bundle, manifest)
    failed = [n for n, f in results.items() if not f.get("ok", True)]
    if failed:
        where = next((results[n]["where"] for n in failed if results[n].get("where")), "")
        raise VerifyError(f"backends {', '.join(failed)} disagree with the {reference_name} policy beyond tolerance"
                          f"{f' ({where})' if where else ''}; figures in {bundle / MANIFEST}; do not ship this bundle")
    return manifest.parity


def _say_results(results: dict, manifest: Manifest, stochastic: bool, reference: str,
                 say: Callable[[str], None]) -> None:
    say(f"  reference: the {reference} policy")
    for name, fig in results.items():
        if name == "eager":
            e = fig["exploration"]
            say(f"  eager  off-greedy {e['off_greedy_rate']:.3f} (expected {e['expected_rate']:.3f}, z {e['z']:+.2f})")
            continue
        line = (f"  {name:<5}  actions {fig['action_agreement']:7.2%}  max|dv| {fig['max_abs_diff_values']:.2e}"
                f"  max|dstate| {fig['max_abs_diff_state']:.2e}")
        if "exploration" in fig:
            e = fig["exploration"]
            line += f"  off-greedy {e['off_greedy_rate']:.3f} (expected {e['expected_rate']:.3f}, z {e['z']:+.2f})"
        say(line + ("  ok" if fig["ok"] else "  FAIL"))
    for name in ("pt2", "aoti"):
        status = manifest.backends.get(name, {}).get("status")
        if status != "ok":
            reason = manifest.backends.get(name, {}).get("reason", "")
            say(f"  {name:<5}  not checked ({status}{': ' + reason if reason else ''})")
