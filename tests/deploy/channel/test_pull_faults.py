"""What a board that pulls refuses, and what it survives: TUF's attacks, a server in trouble, a link cut at 90 %."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import urllib3
from channel_server import CuttingProxy
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import MetaFile
from tuf.api.serialization.json import JSONSerializer

from deploy.agent.fetch import CHUNK
from deploy.channel.repo import Channel, Expiry, write_public
from device.layout import parse_sums


def _on_v1_then_v2_published(world, bundles, name="pi1"):
    """A board running the first release, and a second one published that it has not polled yet."""
    board = world.board(name)
    first = world.publish(bundles["dqn"])
    assert world.poll(board)["outcome"] == "installed"
    second = world.publish(bundles["stacked"])
    return board, first["release"], second["release"]


def _refused(world, board, release, word):
    took = world.poll(board)
    assert took["outcome"] == "refused" and took["exit_code"] == 1, took
    assert word in took["detail"], took["detail"]
    assert os.readlink(board / "current") == f"releases/{release}"  # the running release is untouched
    assert "\n" not in took["journal"] and took["journal"].startswith("edgerl-agent: refused:")
    return took


def _target_file(world, release: str, name: str) -> Path:
    folder, _, base = f"releases/{release}/{name}".rpartition("/")
    return next((world.dir / "targets" / folder).glob(f"*.{base}"))


def test_a_target_altered_on_the_server_is_refused_and_nothing_of_it_is_installed(channel_world, bundles):
    world = channel_world
    board, first, second = _on_v1_then_v2_published(world, bundles)
    onnx = _target_file(world, second, "bundle/policy.onnx")
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    _refused(world, board, first, "LengthOrHashMismatch")
    assert not (board / "releases" / second).exists()


def test_metadata_replayed_from_an_older_version_is_refused(channel_world, bundles):
    world = channel_world
    board = world.board("pi1")
    world.publish(bundles["dqn"])
    old_timestamp = (world.dir / "metadata" / "timestamp.json").read_bytes()
    world.poll(board)
    second = world.publish(bundles["stacked"])
    assert world.poll(board)["outcome"] == "installed"
    (world.dir / "metadata" / "timestamp.json").write_bytes(old_timestamp)  # a mirror serving yesterday's channel
    _refused(world, board, second["release"], "BadVersionNumber")


def test_a_timestamp_past_its_expiry_is_refused_as_a_frozen_channel(channel_world, bundles):
    world = channel_world
    board, first, _ = _on_v1_then_v2_published(world, bundles)
    Channel(world.dir, world.keys).commit_timestamp(Expiry(timestamp_days=-1 / 24))
    _refused(world, board, first, "Expired")


def test_targets_signed_by_a_key_the_root_does_not_trust_are_refused(channel_world, bundles):
    world = channel_world
    board, first, _ = _on_v1_then_v2_published(world, bundles)
    channel = Channel(world.dir, world.keys)
    channel.targets.signed.version += 1
    channel.targets.signatures.clear()
    channel.targets.sign(CryptoSigner.generate_ed25519())  # an attacker's key, valid snapshot and timestamp around it
    write_public(world.dir, f"metadata/{channel.targets.signed.version}.targets.json",
                 channel.targets.to_bytes(JSONSerializer()))
    channel.snapshot.signed.meta["targets.json"] = MetaFile(version=channel.targets.signed.version)
    channel.commit_snapshot()
    _refused(world, board, first, "Unsigned")


def test_a_server_answering_503_mid_release_is_retried_at_the_next_poll(channel_world, bundles):
    world = channel_world
    board, first, second = _on_v1_then_v2_published(world, bundles)
    world.server.failing(True)
    down = world.poll(board)
    assert down["outcome"] == "unreachable" and down["exit_code"] == 1, down
    assert os.readlink(board / "current") == f"releases/{first}"
    world.server.failing(False)
    assert world.poll(board)["outcome"] == "installed"
    assert os.readlink(board / "current") == f"releases/{second}"


def test_a_link_cut_at_90_percent_of_the_release_refetches_at_most_one_chunk(channel_world, bundles):
    world = channel_world
    record = world.publish(bundles["stacked"])
    sizes = sum(info.length for path, info in Channel(world.dir, None).targets.signed.targets.items()
                if path.startswith(f"releases/{record['release']}/"))
    proxy = CuttingProxy(world.server.port, cut_after=int(0.9 * sizes))  # metadata and files alike count
    world.server.proxies.append(proxy)
    board = world.board("pi1", url=f"https://127.0.0.1:{proxy.port}")

    cut = world.poll(board)
    assert cut["outcome"] == "unreachable", cut
    staging = board / "incoming" / record["release"]
    arrived = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
    assert arrived >= 0.8 * sizes  # the cut came late, as on a cellular link mid-download

    proxy.cut_after = 1 << 40
    took = world.poll(board)
    assert took["outcome"] == "installed", took
    release = board / "releases" / record["release"]
    needed = sum((release / n).stat().st_size for n in parse_sums((release / "SHA256SUMS").read_text()))
    refetched = arrived + took["fetched"] - needed
    assert 0 <= refetched <= CHUNK, f"{refetched} bytes fetched twice"
    print(f"\nfigure: cut after {arrived} of {needed} B ({arrived / needed:.0%}); the next poll fetched "
          f"{took['fetched']} B: {refetched} B twice")


def test_a_board_cannot_put_another_boards_report(channel_world):
    world = channel_world
    world.board("pi1")
    world.board("pi2")
    user, password = (world.tmp / "boards" / "pi1" / "channel" / "credentials").read_text().strip().split(":", 1)
    pool = urllib3.PoolManager(ca_certs=str(world.server.ca))
    headers = urllib3.make_headers(basic_auth=f"{user}:{password}")
    forged = pool.request("PUT", f"{world.server.url}/reports/pi2/report.json", body=b'{"release": "evil"}',
                          headers=headers)
    assert forged.status == 403
    assert world.report("pi2") is None
    own = pool.request("PUT", f"{world.server.url}/reports/pi1/report.json", body=b"{}", headers=headers)
    assert own.status in (201, 204)
    wrong = pool.request("PUT", f"{world.server.url}/reports/pi1/report.json", body=b"{}",
                         headers=urllib3.make_headers(basic_auth=f"{user}:not-the-password"))
    assert wrong.status == 401
    nobody = pool.request("PUT", f"{world.server.url}/metadata/timestamp.json", body=b"{}", headers=headers)
    assert nobody.status in (403, 405)


@pytest.mark.parametrize("args, code, says", [
    (("channel", "stage", "{dir}", "150%", "--keys", "{keys}"), 2, "is not a stage"),
    (("channel", "status", "{tmp}"), 2, "is not a channel"),
    (("publish", "{unverified}", "--channel", "{dir}", "--keys", "{keys}"), 1, "verification failed"),
    (("enroll", "--on", "local:{tmp}/b", "--channel", "https://127.0.0.1:9"), 2, "cannot be reached"),
    (("channel", "poll", "--on", "local:{tmp}"), 2, "not enrolled"),
])
def test_bad_channel_input_ends_in_one_line(channel_world, bundle_copy, args, code, says):
    import json

    world = channel_world
    unverified = bundle_copy("dqn")
    manifest = json.loads((unverified / "manifest.json").read_text())
    manifest["parity"] = {**(manifest.get("parity") or {}), "ok": False}
    (unverified / "manifest.json").write_text(json.dumps(manifest))
    ran = world.cli(*(a.format(dir=world.dir, keys=world.keys, tmp=world.tmp, unverified=unverified) for a in args))
    assert ran.returncode == code, (ran.stdout, ran.stderr)
    assert says in ran.stderr and len(ran.stderr.strip().splitlines()) == 1, ran.stderr


def test_a_service_release_on_a_board_without_systemd_is_refused_in_one_line_and_not_retried(channel_world, bundles):
    world = channel_world
    board = world.board("pi1")
    first = world.publish(bundles["dqn"])["release"]
    assert world.poll(board)["outcome"] == "installed"
    ran = world.cli("publish", bundles["stacked"], "--channel", world.dir, "--keys", world.keys, "--service")
    assert ran.returncode == 0, ran.stderr
    assert world.rollout()["gate"] == {"seconds": "30.0", "max_overrun": "0.05"}
    took = _refused(world, board, first, "does not run systemd")
    assert "\n" not in took["detail"]
    again = world.poll(board)  # given up: no download, no second try until another release
    assert again["outcome"] == "refused" and "before" in again["detail"] and again["traffic"]["requests"] == 2


def test_a_board_whose_card_went_read_only_says_so_to_the_channel_and_changes_nothing(channel_world, bundles):
    from small_disks import read_only_view

    world = channel_world
    board, first, _ = _on_v1_then_v2_published(world, bundles, "card")
    with read_only_view(board, world.tmp / "card-ro", "the read-only card test") as card:  # a failing SD card
        took = _refused(world, card, first, "filesystem is read-only")
        assert "Traceback" not in took["journal"] and "replace the card" in took["detail"]
    report = world.report("card")  # the server still hears of it: only the board's own disk is read-only
    assert report["outcome"] == "refused" and "read-only" in report["detail"], report
