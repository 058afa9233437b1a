"""A user brings what TorchRL's own reference scripts build (tests/references/): it exports untouched, verifies
at 100 % of actions within 1e-4, and runs on the board's torch-free loop."""

import json
import multiprocessing
import textwrap
from pathlib import Path

import campaign
import in_process
import pytest

from device.manifest import load_bundle

REFERENCES = Path(__file__).resolve().parents[2] / "references"


SCRIPTS = [("ppo_atari", "pong"), *([("dqn_atari", "pong"), ("sac_mujoco", None)] if campaign.FULL else [])]
"""The tiers export PPO's Atari policy (a ParallelEnv's, with training-only transforms); `make campaigns` also DQN's
Atari one and SAC's MuJoCo one (a sensor policy served on a plant): ~30 s each, and what they add over PPO's is
drawn in the tiers by test_drawn_matrix.py (batched envs, continuous heads) and test_second_round.py (sensors)."""


@pytest.mark.campaign
@pytest.mark.parametrize("script, game", SCRIPTS)
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
    assert first.shape == ([210, 160, 3] if game else [17]), manifest.inputs  # HalfCheetah: 17 joints
    assert (manifest.env.game if manifest.env else None) == game
    if game:  # training's episode shaping is left out of the board's game, and the manifest says why
        dropped = [t["transform"] for t in manifest.provenance["training_only"]]
        assert dropped == ["NoopResetEnv", "EndOfLifeTransform"], manifest.provenance
    selftest = board_python("-m", "device", "selftest", out, cwd=tmp_path)
    assert selftest.returncode == 0 and ": ok" in selftest.stdout, selftest.stdout + selftest.stderr
    if game:
        played = board_python("-m", "device", "play", out, "--max-steps", "100", "--quiet", cwd=tmp_path)
        assert played.returncode == 0, played.stderr
    else:  # the robot's own loop: serve drives a plant of the user's (17 sensors in, 6 torques out) on the board
        served = board_python("-m", "device", "serve", out, "--io", f"{cheetah_plant(tmp_path)}:Cheetah", "--hz", 50,
                              "--seconds", 1, "--status", tmp_path / "status.json", cwd=tmp_path)
        assert served.returncode == 0, served.stderr
        applied = json.loads((tmp_path / "applied.json").read_text())
        assert applied["calls"] >= 40 and applied["shape"] == [6] and applied["max_abs"] <= 1.0, applied


def cheetah_plant(folder: Path) -> Path:
    """A stand-in for HalfCheetah's hardware: seeded sensor readings (float32, as a board's drivers give them
    where the manifest, after DoubleToFloat, says float32) and a log of the torques it was told to apply."""
    path = folder / "cheetah_io.py"
    path.write_text(textwrap.dedent(f"""
        import json
        import numpy as np

        class Cheetah:
            def __init__(self):
                self.rng, self.calls, self.shape, self.max_abs = np.random.default_rng(0), 0, None, 0.0

            def observe(self):
                return self.rng.normal(size=17).astype(np.float32)

            def apply(self, action):
                self.calls, self.shape = self.calls + 1, list(action.shape)
                self.max_abs = max(self.max_abs, float(np.abs(action).max()))

            def close(self):
                record = {{"calls": self.calls, "shape": self.shape, "max_abs": self.max_abs}}
                open({str(folder / "applied.json")!r}, "w").write(json.dumps(record))
    """))
    return path
