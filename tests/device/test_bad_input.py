"""Bad input on the board: one clear line, a non-zero exit code, no half-written report."""

import json
import subprocess
import sys

import numpy as np
import pytest

from device.atari import AtariGame, GameError
from device.manifest import EnvSpec, load_bundle, write_json_atomic
from device.policy import Policy, PolicyError


def device(*args):
    return subprocess.run([sys.executable, "-m", "device", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def refused(run, *words, code=2):
    assert run.returncode == code, run.stdout + run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in run.stderr, run.stderr
    for word in words:
        assert word in last, last


def edit_manifest(bundle, change):
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_missing_bundle(tmp_path):
    refused(device("play", tmp_path / "nope"), "does not exist")


def test_tampered_model(bundle_copy):
    bundle = bundle_copy()
    with open(bundle / "policy.onnx", "r+b") as fh:
        fh.seek(100_000)
        fh.write(b"\xff" * 8)
    refused(device("selftest", bundle), "policy.onnx", "sha256", code=1)  # a failed check, not bad input


def test_unknown_manifest_version(bundle_copy):
    bundle = bundle_copy()
    edit_manifest(bundle, lambda d: d.update(format_version=99))
    refused(device("play", bundle), "format version 99")


def test_model_inputs_that_do_not_match_the_manifest(bundle_copy):
    bundle = bundle_copy()
    edit_manifest(bundle, lambda d: d["outputs"][1].update(shape=[7]))
    refused(device("play", bundle), "action_value", "manifest says")


def test_a_screen_input_of_the_wrong_shape_is_refused_before_playing(bundle_copy):
    bundle = bundle_copy()
    edit_manifest(bundle, lambda d: d["inputs"][0].update(shape=[84, 84, 3]))
    refused(device("play", bundle), "pixels", "uint8[210, 160, 3]")


@pytest.mark.parametrize(("damage", "words"), [
    (lambda b: (b / "golden.npz").write_bytes(b"not a zip"), ["golden.npz"]),
    (lambda b: __import__("numpy").savez(b / "golden.npz", other=[1]), ["golden.npz", "lacks"]),
])
def test_damaged_golden_file_is_one_line(bundle_copy, damage, words):
    from device.manifest import sha256_file

    bundle = bundle_copy()
    damage(bundle)
    edit_manifest(bundle, lambda d: d["files"].update({"golden.npz": sha256_file(bundle / "golden.npz")}))
    refused(device("selftest", bundle), *words)


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d.update(files=list(d["files"])), ["malformed"]),
    (lambda d: d["env"].update(frame_skip="4"), ["frame_skip"]),
    (lambda d: d["env"].update(frame_skip=0), ["frame_skip"]),
])
def test_malformed_manifest_fields_are_one_line(bundle_copy, change, words):
    bundle = bundle_copy()
    edit_manifest(bundle, change)
    refused(device("selftest", bundle), *words)
    refused(device("play", bundle, "--max-steps", 5), *words)


def test_selftest_refuses_a_game_without_a_rom(bundle_copy):
    bundle = bundle_copy()
    edit_manifest(bundle, lambda d: d["env"].update(game="no_such_game"))
    refused(device("selftest", bundle), "no ROM")


def test_corrupt_model_file_with_matching_hash(bundle_copy):
    from device.manifest import sha256_file

    bundle = bundle_copy()
    (bundle / "policy.onnx").write_bytes(b"not an onnx model at all")
    edit_manifest(bundle, lambda d: d["files"].update({"policy.onnx": sha256_file(bundle / "policy.onnx")}))
    refused(device("play", bundle), "cannot load policy.onnx")


def test_missing_rom(bundle_copy):
    bundle = bundle_copy()
    edit_manifest(bundle, lambda d: d["env"].update(game="no_such_game"))
    refused(device("play", bundle, "--max-steps", 5), "no ROM", "no_such_game")


def test_wrong_shape_or_dtype_state_is_refused(bundles):
    manifest = load_bundle(bundles["stacked"])
    session = Policy(bundles["stacked"], manifest)
    (stack,) = [p.input for p in manifest.state]
    with pytest.raises(PolicyError, match=stack):
        session.set_state({stack: np.zeros((3, 84, 84), dtype=np.float32)})
    with pytest.raises(PolicyError, match="float64"):
        session.set_state({stack: np.zeros((4, 84, 84), dtype=np.float64)})


def test_nan_in_policy_output_is_refused(tmp_path):
    import torch

    from host.bundle.pipeline import ExportConfig, export_bundle
    from host.checkpoint import save_checkpoint
    from host.policies import PolicyConfig, build_policy

    policy = build_policy(PolicyConfig("dqn"), EnvSpec())
    with torch.no_grad():
        next(policy.qnet.parameters()).fill_(float("nan"))
    save_checkpoint(tmp_path / "checkpoint.pt", PolicyConfig("dqn"), EnvSpec(), policy.qnet.state_dict())
    bundle = export_bundle(ExportConfig(out=tmp_path / "b", source=tmp_path / "checkpoint.pt", aoti=False,
                                        verify=False, verify_steps=50),
                           say=lambda _: None)
    refused(device("play", bundle, "--max-steps", 3), "NaN")


def test_action_index_outside_the_action_table_is_refused(bundles):
    manifest = load_bundle(bundles["dqn"])
    manifest.action_ids = manifest.action_ids[:1]
    manifest.action_meanings = manifest.action_meanings[:1]
    session = Policy(bundles["dqn"], manifest)
    screens = np.random.default_rng(0).integers(0, 255, (50, 210, 160, 3), dtype=np.uint8)
    with pytest.raises(PolicyError, match="outside 0..0"):
        for screen in screens:
            session.act(screen)
    game = AtariGame(EnvSpec(), [0, 1, 3])
    with pytest.raises(GameError, match="outside"):
        game.step(3)


def test_report_is_written_atomically(tmp_path):
    path = tmp_path / "report.json"
    write_json_atomic(path, {"old": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"unserialisable": object()})
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
