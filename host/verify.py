"""`edgerl verify`: every form of the policy against the eager TorchRL one, on real frames from play.

Deterministic fp32 bundles must agree on 100 % of actions with max |diff| of
action values and next states within `atol`. Stochastic bundles draw their
e-greedy action inside the graph, so there the rate at which each backend's
action differs from its own greedy action is tested against the rate the
manifest declares (a two-sided binomial z-test), and values must still match.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchrl.envs.utils import ExplorationType, set_exploration_type
from tqdm import tqdm

from device.manifest import load_bundle, write_manifest
from host.backends import Trace, eager_step, module_step, onnx_step, run_sequence
from host.checkpoint import CHECKPOINT, load_checkpoint
from host.export import policy_initial
from host.frames import collect_frames
from host.policies import build_policy, io_names


class VerifyError(Exception):
    """The bundle's backends disagree beyond tolerance."""


@dataclass(frozen=True)
class VerifyConfig:
    """What `edgerl verify` checks."""

    bundle: Path
    frames: int = 1000
    """Real Pong frames to run through every backend (at least 1000 for the record)."""
    seed: int = 1
    atol: float = 1e-4
    z_max: float = 4.5
    """Largest |z| accepted for a stochastic bundle's exploration rate."""
    progress: bool = True


def _compare(ref: Trace, got: Trace, atol: float) -> dict[str, Any]:
    value_diff = float(np.abs(ref.values - got.values).max())
    state_diff = max((float(np.abs(r - g).max()) for r, g in zip(ref.states_out, got.states_out, strict=True)),
                     default=0.0)
    return {
        "action_agreement": float((ref.actions == got.actions).mean()),
        "max_abs_diff_values": value_diff,
        "max_abs_diff_state": state_diff,
    }


def _exploration_check(trace: Trace, epsilon: float, z_max: float) -> dict[str, Any]:
    n_actions = trace.values.shape[-1]
    greedy = trace.values.argmax(-1)
    n = len(trace.actions)
    off = int((trace.actions != greedy).sum())
    expected = epsilon * (n_actions - 1) / n_actions
    sd = math.sqrt(max(n * expected * (1 - expected), 1e-12))
    z = (off - n * expected) / sd
    return {"off_greedy_rate": off / n, "expected_rate": expected, "z": z, "ok": abs(z) <= z_max}


def verify_bundle(cfg: VerifyConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every backend, record the figures in the manifest, raise VerifyError on disagreement."""
    manifest = load_bundle(cfg.bundle)
    bundle = Path(cfg.bundle)
    ckpt = load_checkpoint(bundle / CHECKPOINT)
    policy = build_policy(ckpt["policy"], len(manifest.action_ids))
    policy.qnet.load_state_dict(ckpt["weights"])
    stochastic = manifest.exploration.mode == "random"
    if stochastic:
        policy.actor[-1].eps.fill_(manifest.exploration.epsilon)
    policy.actor.eval()
    mode = ExplorationType.RANDOM if stochastic else ExplorationType.DETERMINISTIC
    frames = collect_frames(manifest.env, cfg.frames, seed=cfg.seed)
    in_names, out_names = io_names(policy)
    initial = policy_initial(policy)

    steps: dict[str, Callable] = {"onnx": onnx_step(bundle / manifest.model_file, in_names, out_names)}
    pt2 = manifest.backends.get("pt2", {})
    if pt2.get("status") == "ok":
        steps["pt2"] = module_step(torch.export.load(bundle / pt2["file"]).module())
    aoti = manifest.backends.get("aoti", {})
    if aoti.get("status") == "ok":
        steps["aoti"] = module_step(torch._inductor.aoti_load_package(str(bundle / aoti["file"])))

    def bar(label: str) -> Callable:
        return (lambda it: tqdm(it, desc=f"{label:>6}", unit="frame", leave=False)) if cfg.progress else None

    with set_exploration_type(mode):
        # The eager LSTM resets through is_init (as in training), the exports through zeroed inputs.
        ref = run_sequence(eager_step(policy), frames.pixels, frames.starts, initial,
                           reset_to_zeros=not policy.uses_is_init, progress=bar("eager"))
        results: dict[str, Any] = {}
        for name, step in steps.items():
            trace = run_sequence(step, frames.pixels, frames.starts, initial, progress=bar(name))
            figures = _compare(ref, trace, cfg.atol)
            if stochastic:
                figures["exploration"] = _exploration_check(trace, manifest.exploration.epsilon, cfg.z_max)
                figures["ok"] = (figures["exploration"]["ok"] and figures["max_abs_diff_values"] <= cfg.atol
                                 and figures["max_abs_diff_state"] <= cfg.atol)
            else:
                figures["ok"] = (figures["action_agreement"] == 1.0 and figures["max_abs_diff_values"] <= cfg.atol
                                 and figures["max_abs_diff_state"] <= cfg.atol)
            results[name] = figures
    if stochastic:
        results["eager"] = {"exploration": _exploration_check(ref, manifest.exploration.epsilon, cfg.z_max)}

    for name, fig in results.items():
        if name == "eager":
            e = fig["exploration"]
            say(f"  eager  off-greedy {e['off_greedy_rate']:.3f} (expected {e['expected_rate']:.3f}, z {e['z']:+.2f})")
            continue
        line = (f"  {name:<5}  actions {fig['action_agreement']:7.2%}  max|dv| {fig['max_abs_diff_values']:.2e}"
                f"  max|dstate| {fig['max_abs_diff_state']:.2e}")
        if stochastic:
            e = fig["exploration"]
            line += f"  off-greedy {e['off_greedy_rate']:.3f} (expected {e['expected_rate']:.3f}, z {e['z']:+.2f})"
        say(line + ("  ok" if fig["ok"] else "  FAIL"))
    for name in ("pt2", "aoti"):
        status = manifest.backends.get(name, {}).get("status")
        if status != "ok":
            reason = manifest.backends.get(name, {}).get("reason", "")
            say(f"  {name:<5}  not checked ({status}{': ' + reason if reason else ''})")

    manifest.parity = {
        "frames": len(frames),
        "episode_starts": int(frames.starts.sum()),
        "mode": manifest.exploration.mode,
        "atol": cfg.atol,
        "backends": results,
        "ok": all(f.get("ok", True) for f in results.values()),
    }
    write_manifest(bundle, manifest)
    failed = [n for n, f in results.items() if not f.get("ok", True)]
    if failed:
        raise VerifyError(f"backends {', '.join(failed)} disagree with the eager policy beyond tolerance "
                          f"(figures in {bundle / 'manifest.json'}); do not ship this bundle")
    return manifest.parity
