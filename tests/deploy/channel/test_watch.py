"""A staged rollout over a channel that moves on by the boards' reports and halts itself when they fail."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil

import numpy as np

from deploy.agent.rollout import bucket
from deploy.release import release_files, release_id, sums_text
from device.manifest import EXIT_ROLLOUT_STOPPED


def a_release_that_fails_its_self_test(src, dest):
    """The bundle with its golden outputs changed (and their sha256 in the manifest): TUF and sha256 pass, the
    board's self-test does not, as with a model that computes wrong on the board."""
    shutil.copytree(src, dest)
    with np.load(dest / "golden.npz") as golden:
        arrays = dict(golden)
    name = next(k for k in arrays if arrays[k].dtype.kind == "f" and not k.startswith("in"))
    arrays[name] = arrays[name] + 1.0
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (dest / "golden.npz").write_bytes(buffer.getvalue())
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["files"]["golden.npz"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def first_stage_holding(names, release, count):
    """The smallest stage (in %, two decimals) that holds exactly `count` of the boards for this release."""
    return f"{(sorted(bucket(n, release) for n in names)[count - 1] + 1) / 100:.2f}%"


def _watch(world, stages, max_fail="0"):
    return world.cli("channel", "watch", world.dir, "--keys", world.keys, "--stages", stages, "--max-fail",
                     max_fail, "--soak", "0", "--once")


def _release_of(world, bundle):
    files = release_files(bundle)
    return release_id(bundle, sums_text(files))


def test_a_bad_release_under_watch_reaches_only_the_first_stage_and_the_channel_halts(channel_world, bundles,
                                                                                      tmp_path):
    world = channel_world
    names = [f"pi{i:02d}" for i in range(4)]
    boards = {n: world.board(n) for n in names}
    good = world.publish(bundles["dqn"])["release"]
    assert all(world.poll(b)["outcome"] == "installed" for b in boards.values())

    bad_bundle = a_release_that_fails_its_self_test(bundles["stacked"], tmp_path / "bad")
    first = first_stage_holding(names, _release_of(world, bad_bundle), 1)
    stages = f"{first},50%,100%"
    bad = world.publish(bad_bundle, stage=first)["release"]
    outcomes = {n: world.poll(b) for n, b in boards.items()}
    offered = {n for n, o in outcomes.items() if o["outcome"] == "refused"}
    assert len(offered) == 1 and all("self-test failed" in outcomes[n]["detail"] for n in offered)
    assert {n for n, o in outcomes.items() if o["outcome"] == "waiting"} == set(names) - offered

    halted = _watch(world, stages)
    assert halted.returncode == EXIT_ROLLOUT_STOPPED, halted.stdout + halted.stderr
    assert "halted" in halted.stdout and "1 failed" in halted.stdout
    assert world.rollout()["halted"] and world.rollout()["stage_bp"] < 5000
    for name, board in boards.items():  # every board still runs the good release; the rest never saw the bad
        again = world.poll(board)
        assert os.readlink(board / "current") == f"releases/{good}"
        assert again["outcome"] == ("refused" if name in offered else "halted")
        assert not (board / "releases" / bad).exists()

    status = world.cli("channel", "status", world.dir, "--json")
    reported = {b["board"]: b for b in json.loads(status.stdout)["boards"]}
    assert {n for n, b in reported.items() if b["offered"] == bad and b["outcome"] == "refused"} == offered


def test_a_good_release_under_watch_moves_through_its_stages_one_look_at_a_time(channel_world, bundles):
    world = channel_world
    names = [f"pi{i:02d}" for i in range(3)]
    boards = {n: world.board(n) for n in names}
    first = first_stage_holding(names, _release_of(world, bundles["dqn"]), 1)
    stages = f"{first},50%,100%"
    rid = world.publish(bundles["dqn"], stage=first)["release"]

    waiting = _watch(world, stages)  # nobody has it yet: the stage stands
    assert waiting.returncode == 0 and "0 run it" in waiting.stdout
    looks = []
    for _ in range(3):  # each look a new process: the watch keeps nothing in memory
        for board in boards.values():
            world.poll(board)
        looks.append(_watch(world, stages).stdout.strip())
    assert "-> 50%" in looks[0] and "-> 100%" in looks[1] and "last stage 100%" in looks[2], looks
    assert all(os.readlink(b / "current") == f"releases/{rid}" for b in boards.values())
