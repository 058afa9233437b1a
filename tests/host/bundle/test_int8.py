"""A user asks for an int8 model: it ships only if it plays like fp32."""

import subprocess
import sys

import pytest

from device.manifest import load_bundle
from device.play import PlayConfig, play
from host.bundle.quantize import INT8_FILE, QuantizeConfig, QuantizeError, quantize_bundle


def quick(bundle, **kw):
    return QuantizeConfig(bundle, check_frames=2000, eval_episodes=1, eval_max_steps=300, **kw)


def test_int8_that_agrees_is_added_and_plays(bundle_copy):
    bundle = bundle_copy("stacked")
    figures = quantize_bundle(quick(bundle), say=lambda _: None)
    assert figures["status"] == "ok" and figures["agreement"] >= 0.99
    assert figures["mean_score"]["fp32"] - figures["mean_score"]["int8"] <= 1.0
    manifest = load_bundle(bundle)  # checksums include the new file
    assert INT8_FILE in manifest.files and manifest.backends["int8"]["check_frames"] == 2000
    import onnx

    model = onnx.load(str(bundle / INT8_FILE))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # static QDQ, not dynamic
    report = play(PlayConfig(bundle, episodes=1, seed=1, max_steps=100, int8=True))
    assert report["model_file"] == INT8_FILE and report["steps"] == 100
    run = subprocess.run([sys.executable, "-m", "device", "play", str(bundle), "--int8", "--max-steps", "20"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_int8_below_the_bar_is_refused_and_fp32_stays(bundle_copy):
    bundle = bundle_copy("stacked")
    before = load_bundle(bundle).files
    with pytest.raises(QuantizeError, match="refused: agrees with fp32 on only"):
        quantize_bundle(quick(bundle, min_agreement=1.01), say=lambda _: None)
    manifest = load_bundle(bundle)
    assert manifest.files == before and not (bundle / INT8_FILE).exists()
    assert manifest.backends["int8"]["status"] == "refused" and "agreement" in manifest.backends["int8"]


def test_verify_rechecks_the_int8_model_on_10000_frames(bundle_copy):
    bundle = bundle_copy("stacked")
    quantize_bundle(quick(bundle), say=lambda _: None)
    run = subprocess.run([sys.executable, "-m", "host.cli", "verify", str(bundle)], capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr
    assert "of 10000 real frames" in run.stdout
    assert load_bundle(bundle).backends["int8"]["check_frames"] == 10_000


def test_play_int8_without_an_int8_model_is_a_clear_error(bundles):
    run = subprocess.run([sys.executable, "-m", "device", "play", str(bundles["dqn"]), "--int8"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "export it with `edgerl export --int8`" in run.stderr


def test_a_refused_int8_export_exits_3_and_the_fp32_bundle_plays(tmp_path, monkeypatch, capsys):
    import functools

    import host.bundle.pipeline
    from host.cli import main

    # A bar no model can pass, so the refusal is certain; `make model` goes on past exit code 3 only.
    strict = functools.partial(QuantizeConfig, check_frames=500, eval_episodes=1, eval_max_steps=50,
                               min_agreement=1.01)
    monkeypatch.setattr(host.bundle.pipeline, "QuantizeConfig", strict)
    out = tmp_path / "bundle"
    code = main(["export", "--untrained", "--policy", "stacked", "--no-aoti", "--verify-frames", "50",
                 "--out", str(out), "--int8"])
    assert code == 3
    assert "int8 model refused" in capsys.readouterr().err
    assert not (out / INT8_FILE).exists() and load_bundle(out).backends["int8"]["status"] == "refused"
    assert play(PlayConfig(out, episodes=1, seed=1, max_steps=20))["steps"] == 20


def test_int8_of_the_winning_policy_is_calibrated_on_its_own_games_and_keeps_winning(tmp_path):
    import shutil
    from pathlib import Path

    shipped = tmp_path / "pong"
    shutil.copytree(Path(__file__).resolve().parents[3] / "models" / "pong", shipped)
    cfg = QuantizeConfig(shipped, check_frames=2000, eval_episodes=2)
    # Calibrated on random play, this policy's int8 model lost 28 points a game; on its own games it keeps the
    # score. Its Q-values are close together in many states, so it is still refused on the 99 % agreement bar.
    with pytest.raises(QuantizeError) as refused:
        quantize_bundle(cfg, say=lambda _: None)
    assert "loses" not in str(refused.value)
    figures = load_bundle(shipped).backends["int8"]
    assert figures["mean_score"]["fp32"] >= 15
    assert figures["mean_score"]["fp32"] - figures["mean_score"]["int8"] <= 1.0
