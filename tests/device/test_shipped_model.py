"""The policy shipped in models/pong is intact, self-tests, and says how it was made and how it plays."""

import random
import subprocess
import sys
from pathlib import Path

import pytest
from campaign import trials

from device.manifest import load_bundle
from device.play import PlayConfig, play

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "pong"


def test_shipped_policy_passes_its_selftest():
    run = subprocess.run([sys.executable, "-m", "device", "selftest", str(SHIPPED)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert ": ok" in run.stdout


def test_shipped_policy_beats_the_game_and_says_how_it_was_made():
    manifest = load_bundle(SHIPPED)  # every shipped file matches its sha256
    training = manifest.provenance["training"]
    assert training["algo"] == "pqn" and training["frames_trained"] > 10_000_000
    assert 0 < training["wall_time_s"] <= 2.5 * 3600  # trained from scratch in one 2.5 h sitting's worth
    assert training["hyperparameters"]["env"]["repeat_action_probability"] == 0.25
    assert manifest.provenance["git_commit"]
    evaluation = manifest.provenance["evaluation"]
    assert evaluation["episodes"] == len(evaluation["scores"]) == len(set(evaluation["seeds"])) == 10
    assert evaluation["env"]["repeat_action_probability"] == 0.25 and evaluation["max_steps"] is None
    assert evaluation["mean"] == sum(evaluation["scores"]) / 10 >= 18
    assert (SHIPPED / "learning_curve.png").is_file()


@pytest.mark.campaign
def test_the_recorded_evaluation_replays_game_for_game():
    evaluation = load_bundle(SHIPPED).provenance["evaluation"]
    seeds = evaluation["seeds"]
    assert seeds == list(range(seeds[0], seeds[0] + 10))
    # `edgerl evaluate` plays one game per seed on this very loop: all 10 under `make campaigns`, 2 drawn here
    drawn = sorted(random.Random(len(seeds)).sample(range(len(seeds)), trials(2, len(seeds))))
    scores = [play(PlayConfig(SHIPPED, episodes=1, seed=seeds[i]))["episodes"][0]["score"] for i in drawn]
    assert scores == [evaluation["scores"][i] for i in drawn], drawn
