"""A board no laptop can dial: it pulls its releases from a TUF channel that nginx serves, and reports back."""

from __future__ import annotations

import json
import os

from deploy.agent.rollout import bucket, in_stage
from deploy.release import release_files, release_id, sums_text
from device.layout import parse_sums


def test_a_board_enrolled_in_a_channel_pulls_the_published_release_switches_and_reports_it(channel_world, bundles):
    world = channel_world
    board = world.board("pi1")
    record = world.publish(bundles["dqn"])

    first = world.poll(board)
    assert first["outcome"] == "installed", first
    assert first["exit_code"] == 0
    assert os.readlink(board / "current") == f"releases/{record['release']}"
    assert (board / "releases" / record["release"] / ".verified").is_file()
    report = world.report("pi1")
    assert report["release"] == record["release"] and report["outcome"] == "installed"

    status = world.cli("channel", "status", world.dir)
    assert status.returncode == 0
    assert "pi1" in status.stdout and "up to date" in status.stdout
    board_says = world.cli("status", "--on", f"local:{board}")
    channel = json.loads(board_says.stdout)["channel"]
    assert channel["url"] == world.server.url and channel["outcome"] == "installed" and channel["reported"]

    # Nothing changed: the poll asks for the next root (absent: 404) and the timestamp, and sends nothing.
    mark = world.server.mark()
    again = world.poll(board)
    assert again["outcome"] == "current", again
    asked = world.server.since(mark)
    assert [(r.method, r.uri.rsplit("/", 1)[-1], r.status) for r in asked] == [
        ("GET", "2.root.json", 404), ("GET", "timestamp.json", 200)]
    body = sum(r.body_bytes for r in asked)
    assert sum(r.body_bytes for r in asked if r.status == 200) <= 1024
    print(f"\nfigure: a poll that changes nothing: {len(asked)} requests, {body} B of body "
          f"({144 * body / 1024:.0f} KiB a day at --every 10min)")


def release_file(uri: str, release: str) -> str:
    """A release's file from the address the board fetched it at (its name's sha256 prefix removed)."""
    folder, _, name = uri.split(f"/targets/releases/{release}/", 1)[1].rpartition("/")
    return f"{folder}/{name.split('.', 1)[1]}".lstrip("/")


def test_a_new_release_fetches_only_the_files_whose_hash_changed(channel_world, bundles):
    world = channel_world
    board = world.board("pi1")
    world.publish(bundles["dqn"])
    assert world.poll(board)["outcome"] == "installed"
    second = world.publish(bundles["stacked"])
    assert second["replaces"]

    mark = world.server.mark()
    took = world.poll(board)
    assert took["outcome"] == "installed", took
    fetched = {release_file(r.uri, second["release"]): r.body_bytes for r in world.server.since(mark)
               if f"/targets/releases/{second['release']}/" in r.uri}
    assert not any(name.startswith("device/") for name in fetched), fetched  # the board code is the same: reused
    assert "bundle/policy.onnx" in fetched
    assert took["fetched"] == sum(size for name, size in fetched.items() if name != "SHA256SUMS")
    release = board / "releases" / second["release"]
    sums = parse_sums((release / "SHA256SUMS").read_text())
    size = sum((release / name).stat().st_size for name in sums)
    print(f"\nfigure: a new release: {took['fetched']} B fetched of its {size} B ({took['reused']} files reused)")
    assert took["reused"] == len([n for n in sums if n.startswith("device/")]) == len(sums) - len(fetched) + 1


def test_a_staged_release_reaches_only_the_boards_of_its_stage_and_a_halt_stops_it(channel_world, bundles):
    world = channel_world
    names = [f"b{i}" for i in range(4)]
    boards = {n: world.board(n) for n in names}
    rid = release_id(bundles["dqn"], sums_text(release_files(bundles["dqn"])))
    stage = sorted(bucket(n, rid) for n in names)[1] + 1  # in basis points: the smallest stage that holds two
    record = world.publish(bundles["dqn"], stage=f"{stage / 100:.2f}%")
    inside = {n for n in names if in_stage(n, record["release"], record["stage_bp"])}
    assert len(inside) == 2 and record["stage_bp"] == stage
    outcomes = {n: world.poll(b)["outcome"] for n, b in boards.items()}
    assert {n for n, o in outcomes.items() if o == "installed"} == inside
    assert {n for n, o in outcomes.items() if o == "waiting"} == set(names) - inside

    halted = world.cli("channel", "stage", world.dir, "halt", "--keys", world.keys)
    assert halted.returncode == 0, halted.stderr
    outside = next(n for n in names if n not in inside)
    assert world.poll(boards[outside])["outcome"] == "halted"
    assert not (boards[outside] / "current").exists()

    grown = world.cli("channel", "stage", world.dir, "100%", "--keys", world.keys)
    assert grown.returncode == 0
    assert world.poll(boards[outside])["outcome"] == "installed"
