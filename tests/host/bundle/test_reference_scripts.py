"""A user brings what TorchRL's own reference scripts build (tests/references/): it exports untouched, verifies
at 100 % of actions within 1e-4, and runs on the board's torch-free loop."""

import multiprocessing
from pathlib import Path

import in_process
import pytest

from device.manifest import load_bundle

REFERENCES = Path(__file__).resolve().parents[2] / "references"


@pytest.mark.parametrize("script, game", [("dqn_atari", "pong"), ("ppo_atari", "pong"), ("sac_pendulum", None)])
def test_a_reference_scripts_policy_exports_untouched_and_runs_on_the_board(script, game, tmp_path, board_python):
    out = tmp_path / "bundle"
    run = in_process.edgerl("export", "--from", REFERENCES / f"{script}.py:make", "--out", out, "--no-aoti",
                            "--verify-steps", 300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Warning" not in run.stderr, run.stderr  # torchrl's and gymnasium's known deprecations are silenced
    assert multiprocessing.active_children() == []  # a ParallelEnv's workers are closed, the process can exit
    manifest = load_bundle(out)
    assert manifest.parity["ok"] and manifest.parity["reference"] == "eager"
    for figures in manifest.parity["backends"].values():
        assert figures["action_agreement"] == 1.0
        assert figures["max_abs_diff_values"] <= 1e-4 and figures["max_abs_diff_state"] <= 1e-4
    # One copy of the batched env: the board's input has no batch dimension.
    first = manifest.inputs[0]
    assert first.shape == ([210, 160, 3] if game else [3]), manifest.inputs
    assert (manifest.env.game if manifest.env else None) == game
    if game:  # training's episode shaping is left out of the board's game, and the manifest says why
        dropped = [t["transform"] for t in manifest.provenance["training_only"]]
        assert dropped == ["NoopResetEnv", "EndOfLifeTransform"], manifest.provenance
    selftest = board_python("-m", "device", "selftest", out, cwd=tmp_path)
    assert selftest.returncode == 0 and ": ok" in selftest.stdout, selftest.stdout + selftest.stderr
    if game:
        played = board_python("-m", "device", "play", out, "--max-steps", "100", "--quiet", cwd=tmp_path)
        assert played.returncode == 0, played.stderr
