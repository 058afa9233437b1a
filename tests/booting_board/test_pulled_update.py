"""The booting board pulls: enrolled once over SSH, then its own systemd timer takes a service release from a TUF
channel that nginx serves on the host (reached through qemu's user network), and its own gate commits it."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from board_world import BOARD_DIR, MAX_OVERRUN, REPO, boot_board, record
from channel_server import start_nginx

from deploy.channel.repo import Channel

pytestmark = pytest.mark.board
HZ = 10
GATE_S = 10


def _report(channel, board: str) -> dict:
    path = channel / "reports" / board / "report.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_the_board_on_its_timer_pulls_a_service_release_and_its_own_gate_commits_it(pi, board, cart_bundle,
                                                                                     tmp_path):
    channel, keys = tmp_path / "channel", tmp_path / "keys"
    Channel.init(channel, keys)
    server = start_nginx(channel, tmp_path / "nginx", port=board.channel_port)
    try:
        enrolled = pi.edgerl("enroll", "--on", pi.target, "--channel", f"https://{boot_board.CHANNEL_ADDRESS}",
                             "--ca", server.ca, "--root", channel / "metadata" / "root.json", "--htpasswd",
                             server.htpasswd, "--board-id", "pi", "--every", "15s", "--wheelhouse")
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        assert "edgerl-agent.timer polls every 15s" in enrolled.stdout
        published = subprocess.run(  # the host's own command: no board, no SSH flags
            [sys.executable, "-m", "host.cli", "publish", cart_bundle, "--channel", channel, "--keys", keys,
             "--service", "--io", f"{REPO / 'examples' / 'cart_io.py'}:Cart", "--hz", str(HZ), "--gate-seconds",
             str(GATE_S), "--max-overrun", str(MAX_OVERRUN)], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert published.returncode == 0, published.stdout + published.stderr
        rid = published.stdout.split("published ", 1)[1].split()[0]
        started = time.monotonic()
        deadline = started + 900
        while _report(channel, "pi").get("outcome") != "committed" and time.monotonic() < deadline:
            time.sleep(5)  # the board's own timer polls; the host only reads what the board PUT
        report = _report(channel, "pi")
        assert report.get("outcome") == "committed" and report["release"] == rid, (report, pi.sh(
            "journalctl --user -u edgerl-agent.service -n 20 --no-pager || true"))
        record("pulled_service_release_committed_s", round(time.monotonic() - started, 1))
        assert report["gate"]["verdict"] == "committed"
        assert pi.current() == rid
        assert pi.wait_serving(rid)["release"] == rid
        status = json.loads(pi.edgerl("status", "--on", pi.target).stdout)
        assert status["channel"]["outcome"] == "committed" and status["channel"]["reported"]
    finally:
        pi.sh("systemctl --user disable --now edgerl-agent.timer || true")  # later tests push to this board
        pi.sh(f"rm -rf {BOARD_DIR}/channel")
        server.stop()
