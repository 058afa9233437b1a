"""`edgerl export --int8`: static int8 quantization, validated on how the policy plays.

onnxruntime's static quantization (QDQ, per-channel int8 weights, uint8
activations) calibrated on the policy's own games (its fp32 model playing
on the device loop, 5 % random actions), with the states the fp32 policy
carries along the same sequence. Agreement is measured on other games of
the same kind: what matters is the states the policy visits. Dynamic
quantization is not used: it only touches MatMul/Gemm, so the convolutions
(most of the cost) stay fp32.

The int8 model joins the bundle only if it agrees with fp32 on at least
`min_agreement` of 10,000 real frames and loses at most `max_score_loss`
points of mean score over the same evaluation games on the device loop.
Otherwise it is refused with the figures, and fp32 stays the default.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.manifest import (
    EXIT_INT8_REFUSED,
    INT8_FILE,
    EdgerlError,
    Manifest,
    load_bundle,
    record_files,
    write_manifest,
)
from device.play import PlayConfig, play
from device.policy import session_options
from host.bundle.screens import policy_screens


class QuantizeError(EdgerlError):
    """The int8 model was refused; the fp32 bundle is unchanged."""

    # Its own code: a script (`make model`) can go on with the fp32 bundle after a refusal and still stop on
    # every other failure.
    exit_code = EXIT_INT8_REFUSED


@dataclass(frozen=True)
class QuantizeConfig:
    """How the int8 model is made and judged."""

    bundle: Path
    calibration_frames: int = 512
    check_frames: int = 10_000
    eval_episodes: int = 3
    eval_seed: int = 100
    eval_max_steps: int | None = None
    min_agreement: float = 0.99
    max_score_loss: float = 1.0


def _feeds(screens: np.ndarray, starts: np.ndarray, fp32: Any, manifest: Manifest) -> list[dict]:
    """Inputs along a played sequence, states carried by the fp32 model and zeroed at episode starts."""
    feeds, states = [], {p.input: np.zeros(p.shape, dtype=p.dtype) for p in manifest.state}
    outputs = [p.output for p in manifest.state]
    for i in range(len(screens)):
        if starts[i]:
            states = {k: np.zeros_like(v) for k, v in states.items()}
        feed = {manifest.screen_input: screens[i], **states}
        if manifest.episode_start_input:
            shape = next(t.shape for t in manifest.inputs if t.name == manifest.episode_start_input)
            feed[manifest.episode_start_input] = np.full(shape, bool(starts[i]), dtype=bool)
        feeds.append(feed)
        if outputs:
            nxt = fp32.run(outputs, feed)
            states = {p.input: v for p, v in zip(manifest.state, nxt, strict=True)}
    return feeds


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])


def quantize(model: Path, out: Path, feeds: list[dict]) -> None:
    """Static QDQ quantization of `model` calibrated on `feeds`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"])


def agreement(fp32: Any, int8: Any, feeds: list[dict], action: str) -> float:
    """Share of frames where both models choose the same action (same inputs, fp32 states)."""
    same = sum(int(fp32.run([action], f)[0]) == int(int8.run([action], f)[0]) for f in feeds)
    return same / len(feeds)


def judge_int8(bundle: Path, cfg: QuantizeConfig, say: Callable[[str], None] = print) -> tuple[dict, list[str]]:
    """Agreement on real frames and mean score on the same games, fp32 vs the bundle's int8 model."""
    manifest = load_bundle(bundle)
    fp32 = _session(bundle / manifest.model_file)
    int8 = _session(bundle / INT8_FILE)
    check = policy_screens(bundle, cfg.check_frames, seed=11, segment=500)
    agree = agreement(fp32, int8, _feeds(check.screens, check.starts, fp32, manifest), manifest.action_output)
    say(f"  int8 agrees with fp32 on {agree:.2%} of {len(check)} real frames (the policy's own games)")
    scores = {}
    for name, int8_flag in (("fp32", False), ("int8", True)):
        report = play(PlayConfig(bundle, episodes=cfg.eval_episodes, seed=cfg.eval_seed,
                                 max_steps=cfg.eval_max_steps, int8=int8_flag))
        scores[name] = report["mean_score"]
    say(f"  mean score over {cfg.eval_episodes} games (seed {cfg.eval_seed}): fp32 {scores['fp32']:+.2f}, "
        f"int8 {scores['int8']:+.2f}")
    figures = {"agreement": agree, "check_frames": len(check), "frames_from": "the fp32 policy's own games",
               "eval_episodes": cfg.eval_episodes,
               "eval_seed": cfg.eval_seed, "mean_score": scores, "min_agreement": cfg.min_agreement,
               "max_score_loss": cfg.max_score_loss}
    problems = []
    if agree < cfg.min_agreement:
        problems.append(f"agrees with fp32 on only {agree:.2%} of frames (< {cfg.min_agreement:.0%})")
    if scores["fp32"] - scores["int8"] > cfg.max_score_loss:
        problems.append(f"loses {scores['fp32'] - scores['int8']:.2f} points of mean score (> {cfg.max_score_loss:g})")
    return figures, problems


def quantize_bundle(cfg: QuantizeConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Make, judge and (if it passes) add policy.int8.onnx to the bundle; figures go in the manifest."""
    bundle = Path(cfg.bundle)
    manifest = load_bundle(bundle)
    if manifest.env is None:
        raise QuantizeError("int8 is judged on how the policy plays its game; this bundle has none, so it keeps fp32")
    fp32 = _session(bundle / manifest.model_file)
    calib = policy_screens(bundle, cfg.calibration_frames, seed=7, segment=128)
    with tempfile.TemporaryDirectory() as tmp:
        # Judge a trial copy of the bundle, so the real one changes only if int8 is accepted.
        trial = Path(tmp) / "trial"
        shutil.copytree(bundle, trial)
        calibration = _feeds(calib.screens, calib.starts, fp32, manifest)
        quantize(bundle / manifest.model_file, trial / INT8_FILE, calibration)
        trial_manifest = load_bundle(trial)
        trial_manifest.files = record_files(trial, [*trial_manifest.files, INT8_FILE])
        write_manifest(trial, trial_manifest)
        figures, problems = judge_int8(trial, cfg, say)
        figures["calibration_frames"] = len(calib)
        manifest = load_bundle(bundle)
        if problems:
            figures.update(status="refused", reason="; ".join(problems))
            manifest.backends["int8"] = figures
            write_manifest(bundle, manifest)
            raise QuantizeError(f"int8 model refused: {figures['reason']}; the bundle keeps fp32 only")
        shutil.copy(trial / INT8_FILE, bundle / INT8_FILE)
    manifest.files = record_files(bundle, [*manifest.files, INT8_FILE])
    figures["status"] = "ok"
    manifest.backends["int8"] = figures
    write_manifest(bundle, manifest)
    say(f"  int8 model added: {INT8_FILE}")
    return figures


def recheck_int8(bundle: Path, say: Callable[[str], None] = print) -> None:
    """Re-judge a bundle's int8 model against its fp32 one (after a re-verify); refuse it if it no longer holds."""
    bundle = Path(bundle)
    say(f"checking {INT8_FILE} against fp32")
    figures, problems = judge_int8(bundle, QuantizeConfig(bundle), say)
    manifest = load_bundle(bundle)
    figures["status"] = "refused" if problems else "ok"
    manifest.backends["int8"] = {**manifest.backends.get("int8", {}), **figures}
    write_manifest(bundle, manifest)
    if problems:
        raise QuantizeError(f"the bundle's int8 model {'; '.join(problems)}: play fp32, or re-export")
