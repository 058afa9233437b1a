"""A user exports each tutorial policy to a bundle and verifies it."""

import json
import subprocess
import sys

import in_process
import numpy as np
import onnx
import pytest
import torch

from device import Policy
from device.manifest import FORMAT_VERSION, load_bundle, sha256_file
from device.trust import UnverifiedBundle
from host.bundle.pipeline import ExportConfig, export_bundle
from host.bundle.verify import VerifyConfig, VerifyError, verify_bundle
from host.checkpoint import save_checkpoint
from host.policies import PolicyConfig, build_policy

PONG_MINIMAL_ACTIONS = [0, 1, 3, 4, 11, 12]


def edgerl(*args, timeout=600):
    return in_process.edgerl(*args, timeout=timeout)


def test_cli_export_then_verify_a_recurrent_policy_with_every_backend(tmp_path):
    # The tiers' one AOTInductor compile: states in and out and is_init, the hardest I/O a package carries.
    out = tmp_path / "bundle"
    run = edgerl("export", "--untrained", "--policy", "lstm", "--out", out, "--aoti", "--verify-steps", 300)
    assert run.returncode == 0, run.stderr
    assert "verify ok: 300 steps" in run.stdout
    assert "(default 1000)" in edgerl("export", "--help").stdout  # 1000 steps unless asked: stateful tests below
    assert "aoti  compiling" in run.stdout  # the compile is announced, not 15 s of silence
    assert "CUDA" not in run.stdout + run.stderr  # torch's CPU-only toolchain note does not leak
    for backend in ("onnx", "pt2", "aoti"):
        assert f"{backend:<5}  actions 100.00%" in run.stdout
    manifest = load_bundle(out)
    assert manifest.backends["aoti"]["status"] == "ok", manifest.backends["aoti"]
    assert (out / "policy.aoti.pt2").is_file() and (out / "policy.pt2").is_file()
    parity = manifest.parity
    assert parity["ok"] and parity["frames"] == 300 and parity["episode_starts"] >= 2
    for fig in parity["backends"].values():
        assert fig["action_agreement"] == 1.0 and fig["max_abs_diff_values"] <= 1e-4


@pytest.mark.parametrize("kind", ["dqn", "stacked", "lstm"])
def test_each_policy_bundle_declares_its_io_and_states(bundles, kind):
    manifest = load_bundle(bundles[kind])
    model = onnx.load(str(bundles[kind] / "policy.onnx"))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == [t.name for t in manifest.inputs]
    assert [o.name for o in model.graph.output] == [t.name for t in manifest.outputs]
    assert manifest.inputs[0].name == "pixels" and manifest.inputs[0].shape == [210, 160, 3]
    assert manifest.inputs[0].dtype == "uint8"
    expected_states = {"dqn": 0, "stacked": 1, "lstm": 2}[kind]
    assert len(manifest.state) == expected_states
    if kind == "stacked":
        assert manifest.state[0].shape == [4, 84, 84]
    for pair in manifest.state:
        assert pair.reset == "zeros"


def test_manifest_maps_policy_indices_to_ale_action_ids_and_env_semantics(bundles):
    manifest = load_bundle(bundles["dqn"])
    assert manifest.format_version == FORMAT_VERSION
    assert manifest.action_ids == PONG_MINIMAL_ACTIONS
    assert manifest.action_meanings == ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
    env = manifest.env
    assert (env.game, env.frame_skip, env.repeat_action_probability, env.full_action_space) == ("pong", 4, 0.25, False)
    assert manifest.files["policy.onnx"] == sha256_file(bundles["dqn"] / "policy.onnx")
    prov = manifest.provenance
    assert prov["versions"]["torch"].startswith("2.14.1") and prov["training"]["frames_trained"] == 0


@pytest.mark.parametrize("kind", ["stacked", "lstm"])
def test_stateful_bundles_verify_through_episode_starts(bundles, kind):
    parity = verify_bundle(VerifyConfig(bundles[kind], steps=1000, progress=False), say=lambda _: None)
    assert parity["ok"] and parity["episode_starts"] >= 2
    assert parity["backends"]["onnx"]["max_abs_diff_state"] <= 1e-4


def test_stochastic_bundle_explores_at_the_declared_rate(bundles):
    manifest = load_bundle(bundles["dqn-stochastic"])
    assert manifest.exploration.mode == "random" and manifest.exploration.epsilon == pytest.approx(0.1)
    parity = verify_bundle(VerifyConfig(bundles["dqn-stochastic"], steps=1000, progress=False), say=lambda _: None)
    onnx_fig = parity["backends"]["onnx"]
    assert abs(onnx_fig["exploration"]["z"]) < 4.5
    assert 0.02 < onnx_fig["exploration"]["off_greedy_rate"] < 0.2
    assert onnx_fig["action_agreement"] < 1.0  # the draw happens inside the graph


def test_stochastic_check_rejects_a_graph_that_does_not_explore(bundles, tmp_path):
    # A deterministic model declared as epsilon=0.5 must fail the rate test.
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(bundles["dqn"], bundle)
    data = json.loads((bundle / "manifest.json").read_text())
    data["exploration"] = {"mode": "random", "epsilon": 0.5}
    (bundle / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(VerifyError):
        verify_bundle(VerifyConfig(bundle, steps=1000, progress=False), say=lambda _: None)


def test_export_from_checkpoint_keeps_the_trained_weights(tmp_path):
    policy = build_policy(PolicyConfig("dqn"), load_bundle_env(), seed=5)
    with torch.no_grad():
        for p in policy.qnet.parameters():
            p.mul_(1.7)
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "checkpoint.pt", PolicyConfig("dqn"), load_bundle_env(), policy.qnet.state_dict(),
                    frames=1234)
    out = export_bundle(ExportConfig(out=tmp_path / "b", source=run, aoti=False, verify_steps=100), say=lambda _: None)
    manifest = load_bundle(out)
    assert manifest.provenance["training"]["frames_trained"] == 1234
    import onnxruntime as ort

    screen = np.random.default_rng(0).integers(0, 255, (210, 160, 3), dtype=np.uint8)
    got = ort.InferenceSession(str(out / "policy.onnx")).run(["action_value"], {"pixels": screen})[0]
    from tensordict import TensorDict

    seen = policy.env.transform(TensorDict({"pixels": torch.from_numpy(screen)}, batch_size=[]))
    want = policy.actor(seen)["action_value"].detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def load_bundle_env():
    from device.manifest import EnvSpec

    return EnvSpec()


def test_verify_fails_when_a_backend_disagrees(bundles, tmp_path):
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(bundles["dqn"], bundle)
    # Another network's ExportedProgram in place of this one's.
    other = export_bundle(ExportConfig(out=tmp_path / "other", untrained=True, seed=99, aoti=False, verify=False,
                                       verify_steps=50), say=lambda _: None)
    shutil.copy(other / "policy.pt2", bundle / "policy.pt2")
    run = edgerl("verify", bundle, "--steps", 200)  # two networks part at the first frame
    assert run.returncode == 1
    assert "onnx" in run.stderr and "disagree" in run.stderr and "pt2 policy" in run.stderr
    assert load_bundle(bundle).parity["backends"]["onnx"]["ok"] is False

    # Told not to ship it, the user tries anyway: nothing runs it, each refusal one line (exit 1), a flag to debug.
    for command in ("play", "selftest"):
        refused = subprocess.run([sys.executable, "-m", "device", command, str(bundle)], capture_output=True,
                                 text=True)
        assert refused.returncode == 1 and "its verification failed (onnx disagreed" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    with pytest.raises(UnverifiedBundle, match="--allow-unverified"):
        Policy.load(bundle)
    assert Policy.load(bundle, allow_unverified=True).act(np.zeros((210, 160, 3), np.uint8)) is not None
    debug = subprocess.run([sys.executable, "-m", "device", "--allow-unverified", "play", str(bundle), "--max-steps",
                            "5", "--quiet"], capture_output=True, text=True)
    assert debug.returncode == 0, debug.stderr
    deploy = edgerl("deploy", bundle, "--to", f"local:{tmp_path / 'board'}")
    assert deploy.returncode == 1 and "its verification failed" in deploy.stderr
    assert not (tmp_path / "board").exists()  # refused before any board was touched
