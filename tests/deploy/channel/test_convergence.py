"""Many boards on timers converge on a published release; a bad one under watch stops at its first stage.

A campaign: one short trial here (3 boards, 4 s polls), 50 boards at 1-minute polls under `make campaigns`.
Each board's timer is a thread that runs the board's own agent as systemd's timer would: every period, after a
random delay (RandomizedDelaySec). The figures print with `-s`.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time

import pytest
from campaign import trials
from test_watch import _release_of, a_release_that_fails_its_self_test, first_stage_holding

pytestmark = pytest.mark.campaign
BOARDS = trials(3, 50)
PERIOD = trials(3, 60)


def nginx_cpu_s(server) -> float:
    """CPU seconds of nginx's master and workers so far (/proc, in clock ticks)."""
    pids = [server.proc.pid] + [int(p) for p in open(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")
                                .read().split()]
    ticks = sum(sum(int(f) for f in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[11:13])
                for pid in pids)
    return ticks / os.sysconf("SC_CLK_TCK")


class Timers:
    """One timer thread per board: poll, then wait a period plus a random delay of up to a period."""

    def __init__(self, world, boards, seed: int = 0) -> None:
        self.world, self.boards, self.stop = world, boards, threading.Event()
        self.rng = random.Random(seed)
        self.threads = [threading.Thread(target=self._run, args=(b, self.rng.uniform(0, PERIOD)), daemon=True)
                        for b in boards.values()]

    def _run(self, board, delay: float) -> None:
        while not self.stop.wait(delay):
            self.world.poll(board)
            delay = PERIOD + self.rng.uniform(0, PERIOD / 2)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=600)


def _wait_for(condition, seconds: float) -> float:
    """Seconds until condition() held (a figure, read off the reports); fails after `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "not reached in time"
        time.sleep(0.5)
    return time.monotonic() - started


def test_boards_on_timers_converge_on_a_release_and_a_bad_one_stops_at_its_first_stage(channel_world, bundles,
                                                                                        tmp_path):
    world = channel_world
    names = [f"pi{i:02d}" for i in range(BOARDS)]
    boards = {n: world.board(n) for n in names}
    with Timers(world, boards):
        cpu = nginx_cpu_s(world.server)
        rid = world.publish(bundles["dqn"])["release"]
        took = _wait_for(lambda: all((world.report(n) or {}).get("release") == rid for n in names), 4 * PERIOD + 120)
        cpu = nginx_cpu_s(world.server) - cpu
        print(f"\nfigure: {BOARDS} boards polling every {PERIOD} s (+ up to {PERIOD / 2:g} s jitter) all reported "
              f"{rid} {took:.0f} s after publish; nginx used {cpu:.2f} CPU s")
        assert took <= 2 * (PERIOD + PERIOD / 2) + 60

        bad = a_release_that_fails_its_self_test(bundles["stacked"], tmp_path / "bad")
        first = first_stage_holding(names, _release_of(world, bad), 1)
        bad_rid = world.publish(bad, stage=first)["release"]
        _wait_for(lambda: any((world.report(n) or {}).get("offered") == bad_rid
                              and world.report(n)["outcome"] == "refused" for n in names), 4 * PERIOD + 120)
        stages = f"{first},10%,100%" if float(first[:-1]) < 10 else f"{first},100%"
        halted = world.cli("channel", "watch", world.dir, "--keys", world.keys, "--stages", stages,
                           "--max-fail", "2%", "--soak", "0", "--every", "1")
        assert halted.returncode == 6, halted.stdout + halted.stderr
    offered = [n for n in names if (world.report(n) or {}).get("offered") == bad_rid
               and world.report(n)["outcome"] == "refused"]
    running = [n for n in names if os.readlink(boards[n] / "current") != f"releases/{rid}"]
    print(f"figure: the bad release reached {len(offered)} of {BOARDS} boards (its first stage, {first}) before "
          f"the halt; {len(running)} run it")
    assert len(offered) == 1 and not running and "self-test failed" in world.report(offered[0])["detail"]
    assert world.rollout()["halted"] and "halted" in halted.stdout and "1 failed" in halted.stdout
    for name in names:  # after the halt no other board takes it, and the one that refused it says so still
        assert world.poll(boards[name])["outcome"] == ("refused" if name in offered else "halted")
        assert not (boards[name] / "releases" / bad_rid).exists()
    status = json.loads(world.cli("channel", "status", world.dir, "--json").stdout)
    assert [b["board"] for b in status["boards"] if b["offered"] == bad_rid and b["outcome"] == "refused"] == offered
