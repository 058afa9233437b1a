"""The board's side of `edgerl data pull`: its recordings listed, and only what arrived intact pruned."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploy.board import data as board_data
from deploy.board import fleet_line
from deploy.fleet.status import table
from device.record import RecordConfig, Recorder, read_index


def recording(folder, shards: int = 3) -> dict:
    recorder = Recorder(RecordConfig(folder, shard_decisions=2), {"kind": "io"})
    for i in range(2 * shards):
        recorder.add({"obs.observation": np.float32([i]), "action": np.float32([0.0])})
    recorder.close()
    return read_index(folder)


def test_only_shards_whose_sum_the_host_confirms_are_pruned_and_unlisted_first(tmp_path):
    index = recording(tmp_path / "data" / "cart")
    first, second, third = index["shards"]
    listed = board_data.op_data_list(str(tmp_path))
    assert listed["shards"] == 3 and listed["recordings"]["cart"]["shards"] == index["shards"]
    done = board_data.op_data_prune(str(tmp_path), "cart", f"{first['file']}={first['sha256']}",
                                    f"{second['file']}={'0' * 64}")  # the host's copy of the second was damaged
    assert done == {"pruned": [first["file"]], "left": 2}
    assert [s["file"] for s in read_index(tmp_path / "data" / "cart")["shards"]] == [second["file"], third["file"]]
    assert not (tmp_path / "data" / "cart" / first["file"]).exists()
    assert json.loads((tmp_path / "data" / "cart" / "index.json").read_text())["runs"]  # the runs stay


@pytest.mark.parametrize("name", ["../cart", ".hidden", "", "a/b"])
def test_a_recording_name_cannot_leave_the_data_folder(tmp_path, name):
    recording(tmp_path / "data" / "cart")
    with pytest.raises(board_data.Refused, match="no recording"):
        board_data.op_data_prune(str(tmp_path), name)


def test_the_fleet_table_shows_what_each_board_has_recorded(tmp_path):
    recording(tmp_path / "data" / "cart")
    line = fleet_line.op_fleet_status(str(tmp_path))
    index = read_index(tmp_path / "data" / "cart")
    assert line["data"] == {"shards": 3, "bytes": sum(s["bytes"] for s in index["shards"])}
    rows = table([{"board": "pi", "answered": True, "last_seen": None, **line}])
    header, row = rows
    column = header.index("recorded")
    assert row[column - 2:column + len("recorded")].strip() == f"{line['data']['bytes'] / 1e6:.1f}M/3"
