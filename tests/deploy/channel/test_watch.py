"""A staged rollout over a channel that moves on by the boards' reports (its halt on failures: test_convergence)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil

import numpy as np

from deploy.agent.rollout import bucket
from deploy.release import release_files, release_id, sums_text


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


def test_a_good_release_under_watch_moves_through_its_stages_one_look_at_a_time(channel_world, bundles):
    world = channel_world
    names = [f"pi{i:02d}" for i in range(3)]
    boards = {n: world.board(n) for n in names}
    rid_to_be = _release_of(world, bundles["dqn"])
    first, second = (first_stage_holding(names, rid_to_be, n) for n in (1, 2))  # one board, then two, then all
    stages = f"{first},{second},100%"
    rid = world.publish(bundles["dqn"], stage=first)["release"]

    waiting = _watch(world, stages)  # nobody has it yet: the stage stands
    assert waiting.returncode == 0 and "0 run it" in waiting.stdout
    looks = []
    for _ in range(3):  # each look a new process: the watch keeps nothing in memory
        for board in boards.values():
            world.poll(board)
        looks.append(_watch(world, stages).stdout.strip())
    assert f"-> {float(second[:-1]):g}%" in looks[0] and "-> 100%" in looks[1] and "last stage 100%" in looks[2], \
        looks
    assert all(os.readlink(b / "current") == f"releases/{rid}" for b in boards.values())
