"""The booting board pulls: enrolled once over SSH, its own systemd timer takes service releases from a TUF channel
that nginx serves on the host (reached through qemu's user network), and its own gate commits them; a power cut in
the middle of a pulled update leaves a whole release running and the timer finishes the update after the boot; and
a board enrolled by writing its image (`enroll --image`) starts pulling at its first boot."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from board_world import BOARD_DIR, MAX_OVERRUN, REPO, SEED, TRIALS, boot_board, judge_current, record
from channel_server import Nginx, start_nginx

from deploy.channel.repo import Channel

pytestmark = pytest.mark.board
GATE_S = 10
URL = f"https://{boot_board.CHANNEL_ADDRESS}"


@dataclass
class Pulling:
    """The channel on the host, its server, and what the first pulled update measured."""

    dir: Path
    keys: Path
    server: Nginx
    update_s: float = 0.0
    """From the board's first request for a release's files to its report that the gate committed it."""

    def publish(self, cart_bundle: Path, hz: float, *extra: object) -> str:
        published = subprocess.run(  # the host's own command: no board, no SSH flags
            [sys.executable, "-m", "host.cli", "publish", cart_bundle, "--channel", self.dir, "--keys", self.keys,
             "--service", "--io", f"{REPO / 'examples' / 'cart_io.py'}:Cart", "--hz", str(hz), "--gate-seconds",
             str(GATE_S), "--max-overrun", str(MAX_OVERRUN), *map(str, extra)],
            capture_output=True, text=True, cwd=REPO, timeout=600)
        assert published.returncode == 0, published.stdout + published.stderr
        return published.stdout.split("published ", 1)[1].split()[0]

    def report(self, board: str) -> dict:
        path = self.dir / "reports" / board / "report.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def first_fetch(self, mark: int, release: str, timeout: float = 600) -> float:
        """When the board first asked for one of the release's files (the poll's take begins)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(f"/targets/releases/{release}/" in r.uri for r in self.server.since(mark)):
                return time.monotonic()
            time.sleep(0.5)  # the board's timer decides when; the host only reads nginx's log
        raise AssertionError(f"the board did not fetch {release} within {timeout:.0f} s")

    def wait_report(self, board: str, release: str, outcome: str, pi, timeout: float = 900) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            report = self.report(board)
            if report.get("outcome") == outcome and report.get("release") == release:
                return report
            time.sleep(5)  # the board's own timer polls; the host only reads what the board PUT
        raise AssertionError((self.report(board), pi.sh(
            "journalctl --user -u edgerl-agent.service -n 20 --no-pager || true")))


@pytest.fixture(scope="module")
def pulling(pi, board, tmp_path_factory) -> Iterator[Pulling]:
    tmp = tmp_path_factory.mktemp("pulling")
    Channel.init(tmp / "channel", tmp / "keys")
    server = start_nginx(tmp / "channel", tmp / "nginx", port=board.channel_port)
    try:
        yield Pulling(tmp / "channel", tmp / "keys", server)
    finally:
        pi.sh("systemctl --user disable --now edgerl-agent.timer || true")  # later tests push to this board
        pi.sh(f"rm -rf {BOARD_DIR}/channel")
        server.stop()


def test_the_board_on_its_timer_pulls_a_service_release_and_its_own_gate_commits_it(pi, pulling, cart_bundle):
    enrolled = pi.edgerl("enroll", "--on", pi.target, "--channel", URL, "--ca", pulling.server.ca,
                         "--root", pulling.dir / "metadata" / "root.json", "--htpasswd", pulling.server.htpasswd,
                         "--board-id", "pi", "--every", "15s", "--wheelhouse")
    assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    assert "edgerl-agent.timer polls every 15s" in enrolled.stdout
    mark = pulling.server.mark()
    started = time.monotonic()
    rid = pulling.publish(cart_bundle, pi.rate(60))
    fetching = pulling.first_fetch(mark, rid)
    report = pulling.wait_report("pi", rid, "committed", pi)
    record("pulled_service_release_committed_s", round(time.monotonic() - started, 1))
    pulling.update_s = time.monotonic() - fetching
    assert report["gate"]["verdict"] == "committed"
    assert pi.current() == rid
    assert pi.wait_serving(rid)["release"] == rid
    status = json.loads(pi.edgerl("status", "--on", pi.target).stdout)
    assert status["channel"]["outcome"] == "committed" and status["channel"]["reported"]


def test_a_power_cut_during_a_pulled_update_leaves_a_whole_release_and_the_timer_finishes_the_update(
        pi, board, pulling, cart_bundle):
    assert pulling.update_s > 0, "needs the first pulled update's time (run the module whole)"
    rng = random.Random(SEED)
    cuts = []
    for trial in range(TRIALS):
        before = pi.current()
        mark = pulling.server.mark()
        rid = pulling.publish(cart_bundle, pi.rate(61 + trial))
        fetching = pulling.first_fetch(mark, rid)
        cut_at = rng.uniform(0, pulling.update_s)  # anywhere from the first file to the gate's commit
        time.sleep(max(0.0, fetching + cut_at - time.monotonic()))
        board.power_cut()
        board.boot()
        agent = json.loads(pi.sh(f"cat {BOARD_DIR}/channel/agent.json"))["agent"]
        current, problems = judge_current(pi, f"{BOARD_DIR}/{os.path.dirname(agent)}")
        assert current in (before, rid) and problems == [], (trial, cut_at, current, problems)
        pi.wait_serving(current)
        # No host command: the board's own timer (and gate, if the cut fell in it) finish the update.
        report = pulling.wait_report("pi", rid, "committed", pi)
        assert report["gate"]["verdict"] == "committed" and pi.current() == rid
        cuts.append({"cut_at_s": round(cut_at, 1), "after_boot": "new" if current == rid else "old"})
        print(f"trial {trial}: cut {cut_at:.1f} s into a {pulling.update_s:.0f} s pulled update -> "
              f"{cuts[-1]['after_boot']} release after the boot, {rid} committed by the timer", flush=True)
    record("pulled_power_cuts", {"trials": TRIALS, "seed": SEED, "update_s": round(pulling.update_s, 1),
                                 "cuts": cuts})


def _image_of(pi, folder: Path) -> Path:
    """The parts of the board's root filesystem `enroll --image` reads, as a mounted image would show them."""
    (folder / "etc").mkdir(parents=True)
    (folder / "etc" / "passwd").write_text(pi.sh("cat /etc/passwd"))
    (folder / "usr" / "bin").mkdir(parents=True)
    (folder / "usr" / "bin" / "python3").symlink_to(pi.sh("readlink /usr/bin/python3").strip())
    (folder / "usr" / "lib" / "aarch64-linux-gnu").mkdir(parents=True)
    (folder / "home" / "pi").mkdir(parents=True)
    return folder


def test_a_board_enrolled_by_writing_its_image_pulls_at_its_first_boot(pi, board, pulling, cart_bundle, tmp_path):
    # The SSH enrollment goes: what remains is only what --image writes.
    pi.sh(f"systemctl --user disable --now edgerl-agent.timer; rm -rf {BOARD_DIR}/channel "
          "~/.config/systemd/user/edgerl-agent.*")
    image = _image_of(pi, tmp_path / "image")
    written = subprocess.run(
        [sys.executable, "-m", "host.cli", "enroll", "--image", image, "--board-id", "field-1", "--channel", URL,
         "--ca", pulling.server.ca, "--root", pulling.dir / "metadata" / "root.json", "--htpasswd",
         pulling.server.htpasswd, "--every", "15s"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert written.returncode == 0, written.stdout + written.stderr
    assert "--wheels-for aarch64:3." in written.stdout
    # The written files onto the board's disk as they are (owners by number), then the board boots.
    tarball = tmp_path / "image.tar"
    with tarfile.open(tarball, "w") as tar:
        for top in ("home/pi/edgerl/channel", "home/pi/.config/systemd/user/edgerl-agent.service",
                    "home/pi/.config/systemd/user/edgerl-agent.timer",
                    "home/pi/.config/systemd/user/timers.target.wants/edgerl-agent.timer",
                    "var/lib/systemd/linger/pi"):
            tar.add(image / top, arcname=top)
    unpacked = board.ssh("root", "tar -x --numeric-owner -C / && sync", stdin=tarball)
    assert unpacked.returncode == 0, unpacked.stderr
    kind = written.stdout.split("--wheels-for ")[1].split("`")[0]
    rid = pulling.publish(cart_bundle, pi.rate(90), "--wheels-for", kind)
    board.shutdown()
    started = time.monotonic()
    board.boot()
    report = pulling.wait_report("field-1", rid, "committed", pi)
    record("image_enrolled_first_boot_to_committed_s", round(time.monotonic() - started, 1))
    assert report["gate"]["verdict"] == "committed" and pi.current() == rid
    assert os.path.basename(json.loads(pi.sh(f"cat {BOARD_DIR}/channel/agent.json"))["agent"]) == "poll.py"
