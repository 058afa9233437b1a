"""The policy shipped in models/pong is intact, self-tests, and says how it was made and how it plays."""

import subprocess
import sys
from pathlib import Path

from device.manifest import load_bundle

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "pong"


def test_shipped_policy_passes_its_selftest():
    run = subprocess.run([sys.executable, "-m", "device", "selftest", str(SHIPPED)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert ": ok" in run.stdout


def test_shipped_manifest_records_training_and_ten_device_loop_games():
    manifest = load_bundle(SHIPPED)  # every shipped file matches its sha256
    training = manifest.provenance["training"]
    assert training["algo"] == "ppo" and training["frames_trained"] > 10_000_000
    assert training["wall_time_s"] > 0 and training["hyperparameters"]["lr"] > 0
    assert manifest.provenance["git_commit"]
    evaluation = manifest.provenance["evaluation"]
    assert evaluation["episodes"] == len(evaluation["scores"]) == len(set(evaluation["seeds"])) == 10
    assert evaluation["mean"] == sum(evaluation["scores"]) / 10
    assert (SHIPPED / "learning_curve.png").is_file()
