"""One poll of the channel, in the order python-tuf's client reads a repository: each step one function.

    python3 poll.py BOARD_FOLDER      ->  one line for the journal (stderr), one JSON outcome (stdout)

    refresh (root -> timestamp -> snapshot -> targets, python-tuf) -> the rollout -> in this board's stage?
      -> the venv (from the channel's wheels if this board has none) -> fetch the release's changed files
      (Range-resumed, each checked by TUF) -> the pushed path's own steps (deploy/board/side.py: staging, sha256,
      self-test with the trust policy, atomic switch, keep N) -> report

Promises: nothing of a release runs before TUF verified its files and SHA256SUMS matched them; a poll that
fails anywhere switches nothing and the next one resumes (partial files stay); the board's deploy lock is held
throughout, so a push and a pull never interleave; a release whose self-test failed here is not taken again.
Exit status: 0 (current, installed, judging, committed, waiting, halted, busy), 1 (a check failed, a gate rolled
the release back, or the server did not answer),
2 (not enrolled), 5 (the board's trust policy refused the release).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# Beside the board's modules (flat, with python-tuf in ../../lib); here the deploy packages.
if __package__:
    from deploy.agent import gate
    from deploy.agent.fetch import ChannelHttp, Link
    from deploy.agent.push import push_recordings
    from deploy.agent.rollout import ROLLOUT_TARGET, SUMS_NAME, check_rollout, in_stage, release_target
    from deploy.agent.state import AgentConfig, Outcome, finish
    from deploy.agent.wheels import ensure_venv
    from deploy.board import side
    from deploy.board.durable import write_durably
    from deploy.board.runner import Refused, read_only
else:
    # Run as a script (`python3 -I poll.py` puts no folder on the path): its siblings, then python-tuf's lib/.
    _HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [_HERE, os.path.join(_HERE, "..", "..", "lib")]
    import gate
    import side
    from durable import write_durably
    from fetch import ChannelHttp, Link
    from push import push_recordings
    from rollout import ROLLOUT_TARGET, SUMS_NAME, check_rollout, in_stage, release_target
    from runner import Refused, read_only
    from state import AgentConfig, Outcome, finish
    from wheels import ensure_venv

from tuf.api import exceptions
from tuf.ngclient import Updater

from device import layout
from device.manifest import EXIT_UNTRUSTED

SELFTEST_TIMEOUT = 300.0


@dataclass
class Poll:
    """One poll's parts: the board, its settings, the link, and (after refresh) python-tuf's view of the channel."""

    root: str
    cfg: AgentConfig
    http: ChannelHttp
    owner: str
    updater: Updater | None = None
    offered: str | None = None
    """The release the channel offers, once read."""


def refresh(poll: Poll) -> Updater:
    """python-tuf's refresh: a new root if any, then timestamp, snapshot, targets, each verified and persisted."""
    updater = Updater(os.path.join(poll.cfg.folder, "metadata"), poll.http.url("metadata") + "/",
                      target_base_url=poll.http.url("targets") + "/", fetcher=poll.http, bootstrap=None)
    updater.refresh()
    return updater


def rollout_of(updater: Updater) -> dict[str, Any]:
    """The signed rollout record: release, stage, halted, requirements, the release it replaces."""
    info = updater.get_targetinfo(ROLLOUT_TARGET)
    if info is None:
        raise Refused("the channel has no release published yet")
    try:
        return check_rollout(info.custom.get("edgerl"))
    except ValueError as err:
        raise Refused(str(err)) from None


def waiting(poll: Poll, rollout: dict[str, Any]) -> Outcome | None:
    """The outcome when this board takes nothing now (current, halted, outside the stage, refused here)."""
    rid, current = rollout["release"], side.link_name(poll.root, layout.CURRENT)
    judged = gate.verdict(poll.root, rid)  # a service release: the board's gate has the last word
    if judged is not None:
        return judged
    if current == rid:
        return Outcome("current", f"runs {rid}, the channel's release", current=rid)
    if poll.cfg.given_up == rid:  # before halted: the board's report keeps saying why it did not take it
        return Outcome("refused", f"{rid} was refused here before; stays on {current} until a new release",
                       current=current, failed=True)
    if rollout.get("halted"):
        return Outcome("halted", f"the channel is halted; stays on {current}", current=current)
    if not in_stage(poll.cfg.board, rid, rollout["stage_bp"]):
        return Outcome("waiting", f"not in the {rollout['stage_bp'] / 100:g}% stage of {rid}; stays on {current}",
                       current=current)
    return None


def fetch_sums(poll: Poll, rid: str) -> str:
    """The release's SHA256SUMS, a TUF target like its files (so the release id's digest is checked too)."""
    info = poll.updater.get_targetinfo(release_target(rid, SUMS_NAME))
    if info is None:
        raise Refused(f"the channel signs no {SUMS_NAME} for {rid}")
    cache = os.path.join(poll.cfg.folder, "cache")
    os.makedirs(cache, exist_ok=True)
    part = os.path.join(cache, f"{rid}.{SUMS_NAME}")
    poll.http.resume(info, part)
    with open(part) as fh:
        return fh.read()


def staging_for(poll: Poll, rid: str, sums: str) -> tuple[str, dict[str, Any]]:
    """Where the release's files go (side.py's begin: tidy failed uploads, what current holds intact)."""
    board = side.op_begin(poll.root, rid)
    if board["release_state"] == "damaged":  # repaired in place: its broken files go, the intact ones stay
        staging = os.path.join(poll.root, layout.RELEASES, rid)
        side.op_repair(staging, sums)
    elif board["release_state"] == "absent":
        staging = os.path.join(poll.root, layout.INCOMING, rid)
    else:
        staging = "-"
    return staging, board


def fetch_release(poll: Poll, rid: str, sums: str, staging: str, board: dict[str, Any]) -> tuple[int, int]:
    """Every file current lacks, resumed into staging and checked by TUF; returns (bytes fetched, files reused)."""
    mine = layout.parse_sums(sums)
    linkable = sorted(n for n, d in mine.items() if board["current_sums"].get(n) == d)
    needed = sorted(set(mine) - set(linkable))
    todo = side.op_prepare(os.path.join(poll.root, layout.CURRENT), staging, json.dumps(linkable),
                           json.dumps(needed))["todo"]
    got = 0
    for name in sorted(todo):
        info = poll.updater.get_targetinfo(release_target(rid, name))
        if info is None:
            raise Refused(f"the channel signs no file {name} of {rid}")
        final = os.path.join(staging, name)
        got += poll.http.resume(info, final + layout.PART)
        os.rename(final + layout.PART, final)
    write_durably(os.path.join(staging, layout.SUMS), sums)
    side.op_verify(staging)
    return got, len(linkable) - len(set(todo) & set(linkable))


def selftest(python: str, release_dir: str) -> str:
    """`python -m device selftest` in the release, with its own device package (as a push runs it)."""
    done = subprocess.run([python, "-m", "device", "selftest", os.path.join(release_dir, layout.BUNDLE_DIR)],
                          capture_output=True, text=True, timeout=SELFTEST_TIMEOUT,
                          env={**os.environ, "PYTHONPATH": release_dir})
    line = (done.stdout.strip() or done.stderr.strip()).splitlines()
    last = line[-1] if line else f"exit {done.returncode}"
    if done.returncode == EXIT_UNTRUSTED:
        raise Refused(f"the board's trust policy refuses it: {last}", untrusted=True, selftest_failed=True)
    if done.returncode != 0:
        raise Refused(f"self-test failed: {last}", selftest_failed=True)
    return last


def take(poll: Poll, rollout: dict[str, Any]) -> Outcome:
    """The release onto this board by the pushed path's own steps; current is switched only at the end."""
    rid = rollout["release"]
    started = time.monotonic()
    python, key, wheel_bytes = ensure_venv(poll.root, rollout, poll.updater, poll.http)
    sums = fetch_sums(poll, rid)
    service = gate.wants_service(layout.parse_sums(sums))
    if service:
        gate.prepare(poll.root)
    staging, board = staging_for(poll, rid, sums)
    got, reused = fetch_release(poll, rid, sums, staging, board) if staging != "-" else (0, 0)
    tested = staging if staging != "-" else os.path.join(poll.root, layout.RELEASES, rid)
    checked = selftest(python, tested)
    if service:
        gate.begin(poll.root, rid, rollout)
    done = side.op_finish(poll.root, rid, staging, key, str(poll.cfg.keep), poll.owner)
    if service:
        gate.switched(poll.root)
        checked += "; the board's gate judges it now"
    venv = f", its venv installed from {wheel_bytes} bytes of the channel's wheels" if wheel_bytes else ""
    return Outcome("judging" if service else "installed",
                   f"switched to {rid} ({got} bytes fetched, {reused} files reused{venv}; {checked})",
                   current=rid, previous=done["previous"], fetched=got + wheel_bytes, reused=reused,
                   seconds=round(time.monotonic() - started, 2))


@contextmanager
def deploy_lock(root: str, owner: str) -> Iterator[bool]:
    """The board's deploy lock, taken as a push's holder takes it (side.py): False if another holds it."""
    fd = side.take_lock(root, owner)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)  # the kernel frees the flock with its last descriptor


def run_poll(poll: Poll) -> Outcome:
    """Every step in order; any failure is one outcome line, and nothing was switched."""
    try:
        poll.updater = refresh(poll)
        rollout = rollout_of(poll.updater)
        poll.offered = rollout["release"]
        return waiting(poll, rollout) or take(poll, rollout)
    except exceptions.DownloadError as err:
        return Outcome("unreachable", f"the channel did not answer ({err}); the next poll resumes", error=True)
    except exceptions.RepositoryError as err:
        name = type(err).__name__
        return Outcome("refused", f"TUF refused what the channel served ({name}: {err}); nothing was installed",
                       failed=True)
    except Refused as err:
        if err.fields.get("busy"):
            return Outcome("busy", str(err))
        gave_up = bool(err.fields.get("selftest_failed") or err.fields.get("gave_up"))
        untrusted = bool(err.fields.get("untrusted"))
        return Outcome("refused", f"{err}; nothing was switched", failed=True, gave_up=gave_up, untrusted=untrusted)


def push_back(poll: Poll, outcome: Outcome) -> None:
    """The board's finished recordings to the channel (a failure here is retried next poll, never fatal)."""
    try:
        moved = push_recordings(poll.root, poll.cfg, poll.http)
    except (exceptions.DownloadError, OSError) as err:
        outcome.detail += f" (recordings not pushed: {err}; the next poll resumes)"
        return
    if moved["sent"] or moved["pruned"]:
        outcome.detail += f"; {moved['sent']} recorded shards pushed, {moved['pruned']} pruned here"
    outcome.pushed = moved["sent"]


def main(argv: list[str] | None = None) -> int:
    """Poll once; print the outcome."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: poll.py BOARD_FOLDER", file=sys.stderr)
        return 2
    root = os.path.abspath(args[0])
    try:
        cfg = AgentConfig.load(root)
    except ValueError as err:
        outcome = Outcome("not-enrolled", str(err), failed=True)
        print(outcome.line(), file=sys.stderr)
        print(json.dumps(outcome.reply()))
        return 2
    poll = Poll(root, cfg, ChannelHttp(Link(cfg.url, cfg.ca)), owner=f"pull agent {os.getpid()}")
    try:
        with deploy_lock(root, poll.owner) as held:
            outcome = run_poll(poll) if held else Outcome("busy", "a deploy holds the board's lock; the next poll "
                                                                  "tries")
            if held and outcome.outcome != "unreachable":
                push_back(poll, outcome)
    except OSError as err:
        if err.errno != errno.EROFS:
            raise
        outcome = Outcome("refused", f"{read_only(err)}; nothing was changed", failed=True)
    if not outcome.current:
        outcome.current = side.link_name(root, layout.CURRENT)
    return finish(cfg, poll.http, poll.offered, outcome)


if __name__ == "__main__":
    sys.exit(main())
