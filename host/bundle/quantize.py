"""`edgerl export --int8`: static int8 quantization, validated on how the policy plays.

onnxruntime's static quantization (QDQ, per-channel int8 weights, uint8
activations) calibrated on the policy's own games (its fp32 model playing
on the device loop, 5 % random actions), with the states the fp32 policy
carries along the same sequence. Agreement is measured on other games of
the same kind: what matters is the states the policy visits. Dynamic
quantization is not used: it only touches MatMul/Gemm, so the convolutions
(most of the cost) stay fp32.

A game policy's int8 model joins the bundle only if its mean score over
`eval_episodes` (10) games on the device loop is no lower than fp32's on
the same seeds minus `max_score_loss` (1 point). Agreement with fp32 is
recorded, not judged: a Q-network's actions are often worth the same, so
what is reported beside the score is the value given up, the mean regret
(fp32's Q of its best action minus fp32's Q of the int8 action) over
10,000 frames of the policy's own games. A sensor policy (no game) is
judged on max |d| of its outputs over inputs around its golden ones.
Otherwise it is refused with the figures, and fp32 stays the default.

Before quantizing, two rewrites make the int8 model faster, each used only
if the rewritten fp32 model matches the original on the calibration frames:
the input-side nearest resize runs on the uint8 screen, ahead of the float
conversion (`resize_first`, bit-identical), and a strided first convolution
on few channels becomes SpaceToDepth + a stride-1 convolution
(`space_to_depth`, max |d| <= 1e-4).
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
from device.selftest import read_golden
from host.bundle.resize_first import exact, resize_first
from host.bundle.screens import policy_screens
from host.bundle.space_to_depth import space_to_depth


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
    """Frames of the policy's own games over which agreement and value regret are measured."""
    eval_episodes: int = 10
    eval_seed: int = 100
    eval_max_steps: int | None = None
    max_score_loss: float = 1.0
    """int8's mean score may be at most this much below fp32's, same games."""
    sensor_atol: float = 0.05
    """A sensor policy's int8 outputs may differ from fp32's by at most this (times max(1, |fp32 output|))."""


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


def quantize(model: Path, out: Path, feeds: list[dict]) -> dict[str, Any]:
    """Static QDQ quantization of `model` calibrated on `feeds`; what was done to its front, for the manifest."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self.it, None)

    original = onnx.load(str(model))
    moved, count = resize_first(original)
    same = count > 0 and exact(original.SerializeToString(), moved.SerializeToString(), feeds[:64])
    source = moved if same else original
    packed, convs = space_to_depth(source)
    close = convs > 0 and exact(source.SerializeToString(), packed.SerializeToString(), feeds[:64], atol=1e-4)
    front = {"resize_moved_before_conversion": bool(same), "bit_identical_on_frames": min(len(feeds), 64)
             if same else 0, "convs_as_space_to_depth": convs if close else 0}
    source = packed if close else source
    with tempfile.TemporaryDirectory() as tmp:
        path, pre = Path(tmp) / "source.onnx", Path(tmp) / "pre.onnx"
        onnx.save(source, str(path))
        quant_pre_process(str(path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"])
    return front


def agreement_and_regret(fp32: Any, int8: Any, feeds: list[dict], manifest: Manifest) -> tuple[float, float | None]:
    """Share of frames where both models choose the same action, and the mean value int8 gives up there.

    The regret is fp32's Q of its own best action minus fp32's Q of int8's action (None without Q-values).
    """
    q_values = manifest.values_output == "action_value"
    names = [manifest.action_output, *([manifest.values_output] if q_values else [])]
    same, lost = 0, 0.0
    for feed in feeds:
        mine, *values = fp32.run(names, feed)
        theirs = int(int8.run([manifest.action_output], feed)[0])
        same += int(mine) == theirs
        if q_values:
            q = values[0].reshape(-1)
            lost += float(q.max() - q[theirs])
    return same / len(feeds), (lost / len(feeds) if q_values else None)


def judge_int8(bundle: Path, cfg: QuantizeConfig, say: Callable[[str], None] = print) -> tuple[dict, list[str]]:
    """A game policy's int8 model judged by play (mean score, same games) with agreement and regret reported."""
    manifest = load_bundle(bundle)
    if manifest.env is None:
        return judge_sensor_int8(bundle, manifest, cfg, say)
    fp32 = _session(bundle / manifest.model_file)
    int8 = _session(bundle / INT8_FILE)
    say(f"  playing {cfg.check_frames} frames of the policy's own games to compare the models on")
    check = policy_screens(bundle, cfg.check_frames, seed=11, segment=500)
    feeds = _feeds(check.screens, check.starts, fp32, manifest)
    agree, lost = agreement_and_regret(fp32, int8, feeds, manifest)
    say(f"  int8 agrees with fp32 on {agree:.2%} of {len(check)} frames of the policy's own games"
        + (f"; mean value regret {lost:.4f}" if lost is not None else ""))
    scores, reports = {}, {}
    for name, int8_flag in (("fp32", False), ("int8", True)):
        say(f"  playing {cfg.eval_episodes} games with the {name} model")
        report = play(PlayConfig(bundle, episodes=cfg.eval_episodes, seed=cfg.eval_seed,
                                 max_steps=cfg.eval_max_steps, int8=int8_flag))
        scores[name], reports[name] = report["mean_score"], [e["score"] for e in report["episodes"]]
    say(f"  mean score over {cfg.eval_episodes} games (seed {cfg.eval_seed}): fp32 {scores['fp32']:+.2f}, "
        f"int8 {scores['int8']:+.2f}")
    figures = {"judged_by": "mean score, same games", "mean_score": scores, "scores": reports,
               "eval_episodes": cfg.eval_episodes, "eval_seed": cfg.eval_seed, "eval_max_steps": cfg.eval_max_steps,
               "max_score_loss": cfg.max_score_loss,
               "agreement": agree, "value_regret": lost, "check_frames": len(check),
               "frames_from": "the fp32 policy's own games"}
    problems = []
    if scores["fp32"] - scores["int8"] > cfg.max_score_loss:
        problems.append(f"loses {scores['fp32'] - scores['int8']:.2f} points of mean score over "
                        f"{cfg.eval_episodes} games (> {cfg.max_score_loss:g})")
    return figures, problems


def sensor_feeds(bundle: Path, manifest: Manifest, count: int, seed: int) -> list[dict]:
    """Inputs around the golden ones (seeded noise of their own spread), states as recorded."""
    names = [t.name for t in manifest.inputs]
    golden = read_golden(bundle / manifest.golden_file, names)
    rng = np.random.default_rng(seed)
    feeds = []
    for i in range(count):
        feed = {n: golden[n][i % len(golden[n])] for n in names}
        for n in manifest.observations:
            value = feed[n]
            if value.dtype.kind == "f":
                spread = float(golden[n].std()) or 1.0
                feed[n] = (value + rng.normal(0, 0.1 * spread, value.shape)).astype(value.dtype)
        feeds.append(feed)
    return feeds


def judge_sensor_int8(bundle: Path, manifest: Manifest, cfg: QuantizeConfig, say: Callable[[str], None] = print
                      ) -> tuple[dict, list[str]]:
    """A sensor policy's int8 model judged on its outputs over inputs around the golden ones."""
    fp32, int8 = _session(bundle / manifest.model_file), _session(bundle / INT8_FILE)
    names = [t.name for t in manifest.outputs if t.dtype.startswith("float")]
    worst = 0.0
    for feed in sensor_feeds(bundle, manifest, 1000, seed=11):
        for a, b in zip(fp32.run(names, feed), int8.run(names, feed), strict=True):
            worst = max(worst, float((np.abs(a - b) / np.maximum(1.0, np.abs(a))).max(initial=0.0)))
    say(f"  int8 outputs within {worst:.4f} of fp32 (relative to max(1, |fp32|)) on 1000 inputs around the "
        "golden ones")
    figures = {"judged_by": "max |d| of the outputs", "max_rel_diff": worst, "sensor_atol": cfg.sensor_atol,
               "check_inputs": 1000, "frames_from": "the golden inputs with seeded noise"}
    problems = [] if worst <= cfg.sensor_atol else [f"its outputs differ from fp32 by {worst:.3g} "
                                                    f"(> {cfg.sensor_atol:g})"]
    return figures, problems


def quantize_bundle(cfg: QuantizeConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Make, judge and (if it passes) add policy.int8.onnx to the bundle; figures go in the manifest."""
    bundle = Path(cfg.bundle)
    manifest = load_bundle(bundle)
    fp32 = _session(bundle / manifest.model_file)
    if manifest.env is None:
        calibration = sensor_feeds(bundle, manifest, cfg.calibration_frames, seed=7)
    else:
        calib = policy_screens(bundle, cfg.calibration_frames, seed=7, segment=128)
        calibration = _feeds(calib.screens, calib.starts, fp32, manifest)
    with tempfile.TemporaryDirectory() as tmp:
        # Judge a trial copy of the bundle, so the real one changes only if int8 is accepted.
        trial = Path(tmp) / "trial"
        shutil.copytree(bundle, trial)
        front = quantize(bundle / manifest.model_file, trial / INT8_FILE, calibration)
        trial_manifest = load_bundle(trial)
        trial_manifest.files = record_files(trial, [*trial_manifest.files, INT8_FILE])
        write_manifest(trial, trial_manifest)
        figures, problems = judge_int8(trial, cfg, say)
        figures.update(calibration_frames=len(calibration), front=front)
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


def bar_it_was_judged_by(bundle: Path) -> QuantizeConfig:
    """The judgement the bundle's int8 model was admitted by (its manifest's figures), defaults where unrecorded.

    A model admitted at a bound its user chose (a looser sensor bound, a shorter judgement) is re-judged by that
    bound, not refused by the defaults it was never held to.
    """
    recorded = load_bundle(bundle).backends.get("int8", {})
    fields = ("check_frames", "eval_episodes", "eval_seed", "eval_max_steps", "max_score_loss", "sensor_atol")
    return QuantizeConfig(bundle, **{k: recorded[k] for k in fields if k in recorded})


def recheck_int8(bundle: Path, say: Callable[[str], None] = print) -> None:
    """Re-judge a bundle's int8 model against its fp32 one (after a re-verify); refuse it if it no longer holds."""
    bundle = Path(bundle)
    say(f"checking {INT8_FILE} against fp32")
    figures, problems = judge_int8(bundle, bar_it_was_judged_by(bundle), say)
    manifest = load_bundle(bundle)
    figures["status"] = "refused" if problems else "ok"
    manifest.backends["int8"] = {**manifest.backends.get("int8", {}), **figures}
    write_manifest(bundle, manifest)
    if problems:
        raise QuantizeError(f"the bundle's int8 model {'; '.join(problems)}: play fp32, or re-export")
