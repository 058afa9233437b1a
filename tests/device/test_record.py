"""A board records what its policy saw and did: off the loop's clock, in shards a power cut cannot tear."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from small_disks import small_tmpfs

from device.layout import RECORD_LOCK
from device.record import INDEX, RecordConfig, Recorder, read_index, shard_bytes

REPO = Path(__file__).resolve().parents[2]


def decision(i: int) -> dict:
    return {"episode": i // 7, "action": i % 6, "reward": np.float32(i % 3 - 1), "terminated": i % 7 == 6,
            "truncated": False, "screen_crc32": np.uint32(i * 2654435761 % 2**32)}


def listed(folder: Path) -> list[dict]:
    """The index's shards, each checked against its sha256, with its steps."""
    out = []
    for shard in read_index(folder)["shards"]:
        data = (folder / shard["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"], shard
        with np.load(folder / shard["file"]) as npz:
            out.append({**shard, "steps": npz["step"].tolist()})
    return out


@pytest.mark.parametrize("seed", range(6))
def test_every_decision_is_written_once_or_counted_as_dropped_whatever_the_sizes(tmp_path, seed):
    rng = np.random.default_rng(seed)
    cfg = RecordConfig(tmp_path / "rec", shard_decisions=int(rng.integers(1, 40)),
                       queue_decisions=int(rng.integers(1, 80)))
    added = int(rng.integers(0, 400))
    recorder = Recorder(cfg, {"kind": "game", "seed": seed})
    for i in range(added):
        recorder.add(decision(i))
    recorder.close()
    shards = listed(cfg.folder)
    steps = [s for shard in shards for s in shard["steps"]]
    assert recorder.recorded + recorder.dropped == added and len(steps) == recorder.recorded
    assert steps == sorted(set(steps)), "each decision once, in order"
    assert all(len(shard["steps"]) <= cfg.shard_decisions for shard in shards)
    if recorder.dropped == 0:
        assert steps == list(range(added))


def test_a_writer_that_falls_behind_drops_the_oldest_pending_decisions_and_the_loop_never_waits(tmp_path,
                                                                                               monkeypatch):
    writing, release = threading.Event(), threading.Event()
    real = Recorder._write_shard

    def slow_disk(self, batch):  # an SD card busy writing back: the writer is stuck inside a write
        writing.set()
        release.wait(30)
        real(self, batch)

    monkeypatch.setattr(Recorder, "_write_shard", slow_disk)
    recorder = Recorder(RecordConfig(tmp_path / "rec", shard_decisions=4, queue_decisions=10), {"kind": "game"})
    for i in range(4):
        recorder.add(decision(i))
    assert writing.wait(30)
    for i in range(4, 29):  # the queue holds 10: the loop goes on, the oldest 15 of these 25 go
        recorder.add(decision(i))
    assert recorder.dropped == 15
    release.set()
    recorder.close()
    steps = [s for shard in listed(tmp_path / "rec") for s in shard["steps"]]
    assert steps == [0, 1, 2, 3, *range(19, 29)]
    assert recorder.figures()["dropped"] == 15 and recorder.figures()["recorded"] == 14


def test_what_a_power_cut_leaves_is_tidied_at_the_next_start_and_no_torn_shard_is_ever_listed(tmp_path):
    folder = tmp_path / "rec"
    first = Recorder(RecordConfig(folder, shard_decisions=5), {"kind": "game"})
    for i in range(5):
        first.add(decision(i))
    first.close()
    # The cut: a shard half-written under its temporary name, one renamed in before the index was rewritten,
    # and one whose rename reached the disk but whose data did not.
    (folder / ".shard-000002.npz.tmp").write_bytes(b"PK\x03\x04 half")
    whole = {"step": np.arange(5, 10), "action": np.zeros(5, dtype=np.int64), "run": np.array(first.run)}
    (folder / "shard-000003.npz").write_bytes(shard_bytes(whole))
    (folder / "shard-000004.npz").write_bytes(shard_bytes(whole)[:100])
    second = Recorder(RecordConfig(folder, shard_decisions=5), {"kind": "game"})
    second.add(decision(0))
    second.close()
    shards = listed(folder)
    assert [s["file"] for s in shards] == ["shard-000001.npz", "shard-000003.npz", "shard-000005.npz"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([INDEX, RECORD_LOCK, *[s["file"] for s in shards]])
    assert list(read_index(folder)["runs"]) == [first.run, second.run]


def test_record_max_mb_keeps_the_newest_shards_under_the_bound(tmp_path):
    folder = tmp_path / "rec"
    recorder = Recorder(RecordConfig(folder, max_mb=0.01, shard_decisions=50), {"kind": "game"})
    for i in range(2000):
        recorder.add(decision(i))
    recorder.close()
    shards = listed(folder)
    assert sum(s["bytes"] for s in shards) <= 0.01e6 and recorder.pruned > 0
    assert shards[-1]["steps"][-1] == 1999  # the newest kept
    assert sorted(p.name for p in folder.iterdir()) == sorted([INDEX, RECORD_LOCK, *[s["file"] for s in shards]])


def test_a_recording_is_readable_by_the_boards_user_only(tmp_path):
    recorder = Recorder(RecordConfig(tmp_path / "rec", shard_decisions=1), {"kind": "game"})
    recorder.add(decision(0))
    recorder.close()
    assert stat.S_IMODE((tmp_path / "rec").stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "rec").iterdir()} == {0o600}


def serve_cart(bundle: Path, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "device", "serve", str(bundle), "--io", "examples/cart_io.py:Cart",
                           "--hz", "50", *map(str, args)], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_serve_records_a_plant_at_50_hz_without_dropping_and_says_so_in_its_status(cart_bundle, tmp_path):
    status = tmp_path / "status.json"
    done = serve_cart(cart_bundle, "--seconds", 2, "--status", status, "--record", tmp_path / "rec")
    assert done.returncode == 0, done.stderr
    figures = json.loads(status.read_text())
    recording = figures["recording"]
    assert recording["recorded"] == figures["decisions"] >= 90 and recording["dropped"] == 0, recording
    assert recording["bytes"] == sum(s["bytes"] for s in listed(tmp_path / "rec")) > 0
    run = read_index(tmp_path / "rec")["runs"][recording["run"]]
    assert run["kind"] == "io" and run["outcome"] is True and run["hz"] == 50


def test_record_max_mb_without_record_is_one_line(cart_bundle):
    done = serve_cart(cart_bundle, "--record-max-mb", 5)
    assert done.returncode == 2 and done.stderr.strip() == ("error: --record-max-mb bounds a recording: give --record "
                                                           "DIR too"), done.stderr


def test_a_release_whose_service_records_writes_into_its_boards_data_folder(cart_bundle, tmp_path):
    # What `edgerl deploy --service --record cart` leaves on a board: service.json names the recording.
    release = tmp_path / "board" / "releases" / "policy-1"
    shutil.copytree(cart_bundle, release / "bundle")
    (release / "io").mkdir()
    shutil.copy(REPO / "examples" / "cart_io.py", release / "io" / "cart_io.py")
    (release / "service.json").write_text(json.dumps({"hz": 50, "io": "io/cart_io.py:Cart", "record": "cart",
                                                      "record_max_mb": 5}))
    done = subprocess.run([sys.executable, "-m", "device", "serve", str(release), "--seconds", "1"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    index = read_index(tmp_path / "board" / "data" / "cart")
    assert len(index["runs"]) == 1 and sum(s["decisions"] for s in index["shards"]) >= 45


def test_a_full_disk_costs_the_recording_never_the_loop(tmp_path):
    with small_tmpfs(tmp_path / "small", "size=64k", "the full-disk test") as small:
        recorder = Recorder(RecordConfig(small / "rec", shard_decisions=100), {"kind": "io"})
        # 80 KB observations: a shard of even one decision is larger than the disk, however the writer's
        # batches fall (it takes what is pending when woken: 100, then maybe 85 and 15).
        for i in range(300):
            recorder.add({"obs.camera": np.full(80_000, i % 256, dtype=np.uint8), "action": np.float32(0.0)})
        recorder.close()
        assert recorder.write_errors >= 3 and recorder.dropped == 300 and recorder.recorded == 0
        assert read_index(small / "rec")["shards"] == [] and not list((small / "rec").glob(".*.tmp"))


def test_a_recording_of_a_deployed_bundle_outside_the_boards_data_is_said_where_data_pull_looks(bundles, tmp_path):
    board = tmp_path / "board"
    shutil.copytree(bundles["dqn"], board / "releases" / "r1" / "bundle")
    (board / "current").symlink_to("releases/r1")

    def play(record: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "device", "play", str(board / "current"), "--max-steps", "5",
                               "--quiet", "--record", str(record)], capture_output=True, text=True, cwd=REPO,
                              timeout=120)

    outside = play(tmp_path / "day2")  # what `--record ../../day2` from the board folder names
    assert outside.returncode == 0, outside.stderr
    assert f"outside this board's {board.resolve() / 'data'}" in outside.stderr
    assert f"--record {board.resolve() / 'data'}/NAME" in outside.stderr
    assert (tmp_path / "day2" / INDEX).is_file()  # recorded all the same: the note says where, it does not refuse
    inside = play(board / "data" / "day2")
    assert inside.returncode == 0 and "outside" not in inside.stderr, inside.stderr
