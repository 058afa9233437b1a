"""A user brings a board's recordings home over SSH: every shard checked, a cut link costs only a rerun."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploy.link.ssh import SshTarget
from deploy.link.targets import DeployError
from deploy.pull import PullConfig, pull
from device.record import RecordConfig, Recorder, read_index


def record(folder, decisions: int = 120, shard: int = 10) -> Recorder:
    """A plant run as `serve --record` writes it, in small shards."""
    recorder = Recorder(RecordConfig(folder, shard_decisions=shard), {"kind": "io", "mode": "serve", "hz": 50})
    for i in range(decisions):
        recorder.add({"obs.observation": np.array([i, -i], dtype=np.float32), "action": np.array([0.5], np.float32),
                      "reward": np.float32(-i), "terminated": False, "truncated": False})
    recorder.close()
    return recorder


def shards_here(folder) -> dict[str, str]:
    return {s["board_file"]: s["sha256"] for s in read_index(folder)["shards"]}


def test_a_pull_cut_mid_way_fetches_only_what_is_missing_when_rerun_and_prunes_only_what_arrived(
        ssh_world, ssh_opts, board_dir, tmp_path):
    board = board_dir()
    record(board / "data" / "cart")
    on_board = {s["file"]: s["sha256"] for s in read_index(board / "data" / "cart")["shards"]}
    assert len(on_board) == 12
    server, out = ssh_world.servers[0], tmp_path / "pulled"
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board, retries=0)) as target:
        fetched, real_get = [], target.get

        def get_then_cut(remote, local):
            real_get(remote, local)
            fetched.append(remote)
            if len(fetched) == 5:
                target.client.get_transport().close()  # the link drops after the fifth shard

        target.get = get_then_cut
        with pytest.raises(DeployError):
            pull(target, "pi", PullConfig(out), say=lambda _: None)
    here = out / "pi" / "cart"
    assert len(shards_here(here)) == 5  # what arrived is listed; nothing half-fetched is
    assert not list(here.glob(".*part*"))
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board)) as target:
        again = pull(target, "pi", PullConfig(out), say=lambda _: None)
        assert (again.fetched, again.already) == (7, 5)
        assert shards_here(here) == on_board
        twice = pull(target, "pi", PullConfig(out, prune=True), say=lambda _: None)
    assert (twice.fetched, twice.already, twice.pruned) == (0, 12, 12)
    assert read_index(board / "data" / "cart")["shards"] == [] and not list((board / "data" / "cart").glob("*.npz"))
    assert len(list(here.glob("shard-*.npz"))) == 12 and json.loads((here / "index.json").read_text())["runs"]


def test_a_board_whose_recording_started_over_never_overwrites_what_was_pulled_before(ssh_world, ssh_opts,
                                                                                      board_dir, tmp_path):
    board = board_dir()
    server, out = ssh_world.servers[0], tmp_path / "pulled"
    record(board / "data" / "cart", decisions=20)
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, ssh_opts(board)) as target:
        pull(target, "pi", PullConfig(out), say=lambda _: None)
        for path in (board / "data" / "cart").iterdir():  # the board's data folder wiped: numbering restarts
            path.unlink()
        record(board / "data" / "cart", decisions=30)
        pull(target, "pi", PullConfig(out), say=lambda _: None)
    index = read_index(out / "pi" / "cart")
    assert len(index["shards"]) == 5 and len(index["runs"]) == 2  # 2 shards, then 3: both runs kept whole
