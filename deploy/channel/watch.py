"""`edgerl channel watch`: a staged rollout that moves on by the boards' reports and halts itself on failures.

Its state is the channel and the reports, nothing in memory: each step reads the rollout record (stage, when
it last changed, halted) and the reports, and decides once; killed and restarted, it carries on where the
channel is. (hawkBit's groups with success and error thresholds, AWS IoT Jobs' abort criteria, here over TUF.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.agent.rollout import basis_points
from deploy.channel.keys import ChannelError
from deploy.channel.publish import rollout, stage
from deploy.channel.repo import Channel
from deploy.channel.status import reports

TOOK = ("installed", "current", "committed")
"""Outcomes of a board that runs the release (a service release's gate committed it: "judging" is not yet)."""
FAILED = ("refused", "rolled-back")
"""Outcomes of a board that was offered the release and did not keep it."""


@dataclass(frozen=True)
class WatchConfig:
    """How `edgerl channel watch` moves a release through its stages."""

    channel: Path
    keys: Path
    stages: tuple[float, ...] = (1.0, 10.0, 100.0)
    max_fail: str = "0"
    """Failed boards tolerated: a number, or a share of the boards that reported on the release (2%)."""
    min_reports: int = 1
    """Boards of the current stage that must run the release before the next stage."""
    soak_s: float = 600.0
    """Seconds a stage must stand (since it was set) before the next."""


@dataclass
class Step:
    """What one look at the channel decided."""

    action: str
    """advanced, halted, waiting, done, already halted."""
    line: str
    took: int = 0
    failed: int = 0


def tolerated(max_fail: str, reported: int) -> float:
    """How many failures `max_fail` allows among `reported` boards."""
    if max_fail.endswith("%"):
        return float(max_fail[:-1]) / 100 * reported
    return float(max_fail)


def tally(record: dict[str, Any], found: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(boards that run the release, boards that were offered it and failed)."""
    rid = record["release"]
    took = [r["board"] for r in found if r.get("release") == rid and r.get("outcome") in TOOK]
    failed = [r["board"] for r in found if r.get("offered") == rid and r.get("outcome") in FAILED]
    return took, failed


def step(cfg: WatchConfig, now: float | None = None) -> Step:
    """Look once: halt on too many failures, else move to the next stage when this one is soaked and reported."""
    now = time.time() if now is None else now
    record = rollout(Channel(cfg.channel, None))
    if record is None:
        raise ChannelError(f"{cfg.channel} has no release to watch: publish one first")
    took, failed = tally(record, reports(cfg.channel))
    counts = f"{len(took)} run it, {len(failed)} failed"
    if record.get("halted"):
        return Step("already halted", f"{record['release']} is halted ({counts})", len(took), len(failed))
    if failed and len(failed) > tolerated(cfg.max_fail, len(took) + len(failed)):
        stage(cfg.channel, cfg.keys, None)
        return Step("halted", f"halted {record['release']} at {record['stage_bp'] / 100:g}%: {counts} "
                              f"({', '.join(sorted(failed)[:5])}), more than --max-fail {cfg.max_fail}",
                    len(took), len(failed))
    later = [s for s in cfg.stages if basis_points(s) > record["stage_bp"]]
    standing = now - float(record.get("changed", record.get("published", now)))
    if not later:  # the last stage is watched for failures through its soak too
        word = "done" if standing >= cfg.soak_s else "waiting"
        return Step(word, f"{record['release']} at its last stage {record['stage_bp'] / 100:g}% ({counts})",
                    len(took), len(failed))
    if len(took) < cfg.min_reports or standing < cfg.soak_s:
        return Step("waiting", f"{record['release']} at {record['stage_bp'] / 100:g}%: {counts}; next "
                               f"{later[0]:g}% after {cfg.min_reports} run it and {cfg.soak_s:g} s "
                               f"(standing {standing:.0f} s)", len(took), len(failed))
    stage(cfg.channel, cfg.keys, later[0])
    return Step("advanced", f"{record['release']}: {record['stage_bp'] / 100:g}% -> {later[0]:g}% ({counts})",
                len(took), len(failed))


def watch(cfg: WatchConfig, every_s: float, say: Callable[[str], None],
          sleep: Callable[[float], None] = time.sleep) -> Step:
    """Step until the release is at its last stage (done) or halted; returns the last step."""
    last = ""
    while True:
        done = step(cfg)
        if done.line != last:
            say(done.line)
            last = done.line
        if done.action in ("done", "halted", "already halted"):
            return done
        sleep(every_s)
