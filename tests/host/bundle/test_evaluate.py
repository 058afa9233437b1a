"""A user scores a bundle on the device's own loop and finds the scores in its manifest."""

import json

import in_process

from device.manifest import load_bundle
from device.play import PlayConfig, play


def edgerl(*args):
    return in_process.edgerl(*args, timeout=600)


def test_evaluate_records_the_device_loops_scores_in_the_manifest(bundle_copy):
    bundle = bundle_copy("stacked")
    before = load_bundle(bundle)
    run = edgerl("evaluate", bundle, "--episodes", 3, "--seed", 7, "--max-steps", 150)
    assert run.returncode == 0, run.stderr
    assert "mean score" in run.stdout

    after = load_bundle(bundle)  # still a valid bundle, sha256 of every file intact
    figures = after.provenance["evaluation"]
    assert figures["seeds"] == [7, 8, 9]
    # The same games played directly by the device loop give the same scores.
    direct = [play(PlayConfig(bundle, episodes=1, seed=s, max_steps=150))["episodes"][0]["score"] for s in (7, 8, 9)]
    assert figures["scores"] == direct
    assert figures["mean"] == sum(direct) / 3
    # Figures are added without changing the bundle's identity (what the board deploys).
    assert after.bundle_id == before.bundle_id
    assert json.loads((bundle / "manifest.json").read_text())["bundle_id"] == before.bundle_id


def test_evaluate_refuses_a_tampered_bundle(bundle_copy):
    bundle = bundle_copy("dqn")
    with open(bundle / "policy.onnx", "ab") as fh:
        fh.write(b"\0")
    run = edgerl("evaluate", bundle, "--episodes", 1)
    assert run.returncode == 1  # a failed check
    assert "does not match its sha256" in run.stderr.strip().splitlines()[-1]
    assert "Traceback" not in run.stderr
