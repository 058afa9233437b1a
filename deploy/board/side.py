"""The board's side of every deploy step: one stdlib-only module, run by the board's python3 (3.9 or newer).

    python3 .board/<digest>/side.py OP ARG...      ->  one JSON line on stdout

The host ships this file (with `device/layout.py`, the layout it shares) into a folder named by their digest,
so the code that judges a release is always the deploying host's, never an old release's. Paths travel as
argv words; nothing here is built from a string.

Every op answers with one JSON object: `{"ok": true, ...}` or `{"ok": false, "error": "<one line>", ...}` for
a refusal (a broken release, a lock held by another deploy, a full disk). Exit status: 0 when the op answered,
2 for a wrong command line, 1 for an unexpected crash.
"""

from __future__ import annotations

import json
import os
import platform
import select
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

from device import trust
from device.layout import (
    BUNDLE_DIR,
    CHANNEL,
    CURRENT,
    DEPLOY_LOCK,
    GATE,
    IN_USE,
    INCOMING,
    MODEL_CHOICE,
    PART,
    PREVIOUS,
    RELEASES,
    SUMS,
    VENV_COMPLETE,
    VENV_LINK,
    VENVS,
    VERIFIED,
    parse_sums,
    sha256_file,
    sums_digest,
)
from device.manifest import MANIFEST

# Side by side on the board, top-level modules there; here the deploy.board package (a bare name could be anyone's).
if __package__:
    from deploy.board.deploy_lock import is_locked, take_lock, try_lock
    from deploy.board.durable import read_json, relink
    from deploy.board.runner import NO_SPACE, Refused, emit, run_op, space
else:
    from deploy_lock import is_locked, take_lock, try_lock
    from durable import read_json, relink
    from runner import NO_SPACE, Refused, emit, run_op, space

INPUT_FD = 0
"""Where `hold-lock` hears the deploy's heartbeat: its stdin, fed by the host (`deploy.lock.BoardLock`)."""


def read_text(path: str) -> str:
    """A small text file's content."""
    with open(path) as fh:
        return fh.read()


def read_sums(folder: str) -> dict[str, str] | None:
    """The SHA256SUMS of a folder, or None when it has none."""
    try:
        with open(os.path.join(folder, SUMS)) as fh:
            return parse_sums(fh.read())
    except OSError:
        return None


def intact(folder: str, name: str, want: str) -> bool:
    """Whether the file exists and hashes to `want` (the one digest: the contract's, device.layout)."""
    try:
        return sha256_file(os.path.join(folder, name)) == want
    except OSError:
        return False


def release_problems(rel: str) -> list[str]:
    """What is wrong with a release: every file against SHA256SUMS, and SHA256SUMS against the release id."""
    if not os.path.isdir(rel):
        return ["the release folder is missing"]
    try:
        with open(os.path.join(rel, SUMS), "rb") as fh:
            text = fh.read().decode(errors="replace")
    except OSError:
        return ["SHA256SUMS is missing"]
    # A release id ends with the digest of the SHA256SUMS edgerl wrote, so editing a file and its sum is caught.
    problems = [] if sums_digest(text) == os.path.basename(rel).rsplit("-", 1)[-1] else ["SHA256SUMS was modified"]
    for name, want in parse_sums(text).items():
        if not os.path.exists(os.path.join(rel, name)):
            problems.append(name + " is missing")
        elif not intact(rel, name, want):
            problems.append(name + " was modified")
    return problems


def untrusted(rel: str) -> list[str]:
    """Why the board's trust policy refuses the release's bundle (nothing when it has no policy)."""
    bundle = os.path.join(rel, BUNDLE_DIR)
    root = trust.board_root(bundle)
    if root is None or not os.path.lexists(os.path.join(root, trust.POLICY)):
        return []
    try:
        with open(os.path.join(bundle, MANIFEST)) as fh:
            files = sorted(json.load(fh).get("files", {}))
        trust.check_release(bundle, files)
    except trust.TrustError as err:
        return [str(err)]
    except (OSError, ValueError, AttributeError) as err:
        return [f"its manifest cannot be read ({err})"]
    return []


def judged(rel: str) -> list[str]:
    """A release's problems: its checksums, never having passed its self-test, the board's trust policy."""
    problems = release_problems(rel)
    if not problems and not os.path.isfile(os.path.join(rel, VERIFIED)):
        problems = ["it never passed its self-test"]
    return problems or untrusted(rel)


def link_name(root: str, name: str) -> str | None:
    """The release a link of the board folder points at, or None."""
    path = os.path.join(root, name)
    return os.path.basename(os.readlink(path)) if os.path.islink(path) else None


def _machine() -> dict[str, str]:
    return {"machine": platform.machine(), "python": "{}.{}".format(*sys.version_info[:2])}


def op_probe(root: str) -> dict[str, Any]:
    """The board's architecture, Python, free space, home."""
    os.makedirs(root, exist_ok=True)
    return {**_machine(), **space(root), "home": os.path.expanduser("~")}


def op_status(root: str) -> dict[str, Any]:
    """Current and previous releases, releases and venvs on the board, whether a deploy holds the lock."""
    def ls(name: str, marker: str = "") -> list[str]:  # with a marker: only entries holding it (finished venvs)
        path = os.path.join(root, name)
        names = sorted(n for n in os.listdir(path) if not n.startswith(".")) if os.path.isdir(path) else []
        return [n for n in names if not marker or os.path.isfile(os.path.join(path, n, marker))]

    return {"current": link_name(root, CURRENT), "previous": link_name(root, PREVIOUS), "releases": ls(RELEASES),
            "venvs": ls(VENVS, VENV_COMPLETE), **_machine(), "locked": is_locked(root), "channel": _channel(root),
            "damaged": damaged(root),
            "model": read_json(os.path.join(root, CURRENT, BUNDLE_DIR, MODEL_CHOICE))}  # int8 or fp32, and why


def damaged(root: str) -> list[str]:
    """What is wrong with current's files (a flipped byte on an SD card): nothing when whole or when there is none."""
    current = os.path.join(root, CURRENT)
    return release_problems(os.path.join(root, os.readlink(current))) if os.path.islink(current) else []


def _channel(root: str) -> dict[str, Any] | None:
    """The channel a board pulls from, its last poll and whether the server has its report; None if not enrolled."""
    settings = read_json(os.path.join(root, CHANNEL, "agent.json"))
    last = read_json(os.path.join(root, CHANNEL, "last-poll.json")) or {}
    return {"url": settings.get("url"), "board": settings.get("board"), "last_poll": last.get("time"),
            "outcome": last.get("outcome"), "detail": last.get("detail"),
            "reported": last.get("reported")} if settings else None


def op_hold_lock(root: str, owner: str, silence: str) -> None:
    """Hold the deploy lock for as long as the deploy feeds our stdin; the kernel frees it when we end.

    We end when the deploy closes our stdin (it finished, or died), or after
    `silence` seconds without a heartbeat (a cut link): nothing is left to
    clean by hand.
    """
    fd = take_lock(root, owner)
    path = os.path.join(root, DEPLOY_LOCK)
    if fd is None:
        try:
            with open(path) as fh:
                who = fh.read().strip()
            quiet = time.time() - os.stat(path).st_mtime
        except OSError:
            who, quiet = "?", 0.0
        raise Refused("another deploy holds the lock", held_by=who, quiet_s=quiet)
    emit({"ok": True, "locked": True})
    while True:
        ready, _, _ = select.select([INPUT_FD], [], [], float(silence))
        if not ready or not os.read(INPUT_FD, 4096):
            return None
        os.utime(path)


def op_begin(root: str, release: str) -> dict[str, Any]:
    """Under the lock, at a deploy's start: tidy failed uploads, say what current holds intact, judge `release`."""
    os.makedirs(root, exist_ok=True)
    notes = []
    incoming = os.path.join(root, INCOMING)
    for name in sorted(os.listdir(incoming)) if os.path.isdir(incoming) else []:
        if name != release:  # staging of failed deploys: nobody else can be using it while we hold the lock
            shutil.rmtree(os.path.join(incoming, name), ignore_errors=True)
            notes.append("removed the unfinished upload incoming/" + name)
    current = os.path.join(root, CURRENT)
    # What current really holds (hashed, not taken from its SHA256SUMS): only intact files are reused.
    sums = {name: want for name, want in (read_sums(current) or {}).items() if intact(current, name, want)}
    rel = os.path.join(root, RELEASES, release)
    state = "absent"
    if os.path.isdir(rel):
        problems = release_problems(rel)
        state = "damaged" if problems else ("verified" if os.path.isfile(os.path.join(rel, VERIFIED)) else "untested")
        if problems:
            notes.append("release {} is damaged ({}); repairing it".format(release, "; ".join(problems[:3])))
    return {**_machine(), **space(root), "release_state": state, "current_sums": sums, "notes": notes,
            "current": link_name(root, CURRENT)}


def op_repair(rel: str, sums_text: str) -> dict[str, Any]:
    """Make a damaged release uploadable again in place: drop whatever does not match edgerl's SHA256SUMS."""
    if os.path.exists(os.path.join(rel, VERIFIED)):
        os.remove(os.path.join(rel, VERIFIED))
    removed = []
    for name, want in parse_sums(sums_text).items():
        path = os.path.join(rel, name)
        if os.path.exists(path) and not intact(rel, name, want):
            os.remove(path)
            removed.append(name)
    path = os.path.join(rel, SUMS)
    if os.path.exists(path) and read_text(path) != sums_text:  # exact: the release id is a digest of the text
        os.remove(path)
    return {"removed": removed}


def op_remove_tree(path: str) -> dict[str, Any]:
    """Remove a folder (a failed upload on a full disk)."""
    shutil.rmtree(path, ignore_errors=True)
    return {}


def op_prepare(current: str, staging: str, linkable: str, needed: str) -> dict[str, Any]:
    """Hard-link unchanged files from current, make folders; say which files still need bytes, and from where."""
    reuse, send = json.loads(linkable), json.loads(needed)
    todo = {}
    for name in reuse + send:
        dst = os.path.join(staging, name)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.exists(dst):
            continue
        if name in reuse:
            try:
                os.link(os.path.join(current, name), dst)
                continue
            except OSError as err:
                if err.errno in NO_SPACE:
                    raise
        part = dst + PART
        todo[name] = os.path.getsize(part) if os.path.exists(part) else 0
    return {"todo": todo}


def op_verify(staging: str) -> dict[str, Any]:
    """Every uploaded file against SHA256SUMS; mismatching files are removed, so a rerun uploads them again."""
    sums = read_sums(staging)
    if sums is None:
        raise Refused("SHA256SUMS is missing", bad=[SUMS])
    bad = [name for name, want in sorted(sums.items()) if not intact(staging, name, want)]
    for name in bad:
        if os.path.exists(os.path.join(staging, name)):
            os.remove(os.path.join(staging, name))
    if bad:
        raise Refused(", ".join(bad) + " did not match its sha256", bad=bad)
    return {"files": len(sums)}


def _remove_unless_in_use(folder: str) -> bool:
    """Remove a release unless a process runs from it (its `.in-use` shared-locked: device/in_use.py)."""
    try:
        fd = os.open(os.path.join(folder, IN_USE), os.O_RDONLY)
    except FileNotFoundError:  # nothing ever ran from it
        fd = None
    free = fd is None or try_lock(fd)
    if free:  # removed under the lock: a process arriving now waits, then sees it gone
        shutil.rmtree(folder, ignore_errors=True)
    if fd is not None:
        os.close(fd)
    return free


def _prune(rels: str, pinned: set[str], keep: int) -> list[str]:
    names = sorted(os.listdir(rels), key=lambda n: os.path.getmtime(os.path.join(rels, n)), reverse=True)
    pruned, kept = [], 0
    for name in names:
        if name in pinned:
            continue
        if kept < keep - len(pinned):
            kept += 1
            continue
        if _remove_unless_in_use(os.path.join(rels, name)):
            pruned.append(name)
    return pruned


def op_finish(root: str, release: str, staging: str, venv_key: str, keep: str, owner: str) -> dict[str, Any]:
    """Move the verified release into place, link its venv, switch current (keeping previous), prune."""
    # Switch only while this deploy still holds the lock: if its holder expired (a silent link), another
    # deploy may be running now.
    lock = os.path.join(root, DEPLOY_LOCK)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    with open(lock) as fh:
        held = not try_lock(fd) and fh.read() == owner
    os.close(fd)
    if not held:
        raise Refused("the deploy lock expired before the switch", lost_lock=True)
    rels = os.path.join(root, RELEASES)
    rel_dir = os.path.join(rels, release)
    os.makedirs(rels, exist_ok=True)
    if staging != "-" and os.path.realpath(staging) != os.path.realpath(rel_dir):
        shutil.rmtree(rel_dir, ignore_errors=True)
        os.rename(staging, rel_dir)
    open(os.path.join(rel_dir, VERIFIED), "w").close()
    relink(os.path.join(rel_dir, VENV_LINK), os.path.join("..", "..", VENVS, venv_key))
    os.sync()  # the release's files and its venv on disk before current may name them: a power cut comes any time
    current, previous = os.path.join(root, CURRENT), os.path.join(root, PREVIOUS)
    new = os.path.join(RELEASES, release)
    old = os.readlink(current) if os.path.islink(current) else None
    if old and old != new:
        relink(previous, old)
    relink(current, new)
    pinned = {n for n in (link_name(root, CURRENT), link_name(root, PREVIOUS)) if n}
    return {"previous": old, "pruned": _prune(rels, pinned, int(keep))}


def op_rollback(root: str) -> dict[str, Any]:
    """Swap current and previous, if previous is intact and once passed its self-test."""
    current, previous = os.path.join(root, CURRENT), os.path.join(root, PREVIOUS)
    if not os.path.islink(previous):
        raise Refused("there is no previous release to roll back to")
    if os.path.exists(os.path.join(root, GATE)):
        raise Refused("the board's gate is still judging the last deploy --service; wait for its verdict "
                      "(`edgerl service status`)")
    old_cur, old_prev = os.readlink(current), os.readlink(previous)
    problems = judged(os.path.join(root, old_prev))
    if problems:
        name = os.path.basename(old_prev)
        refused = problems == untrusted(os.path.join(root, old_prev))
        why = "is refused by the board's trust policy" if refused else "is broken"
        raise Refused(f"the previous release {name} {why} ({'; '.join(problems[:3])})", untrusted=refused)
    relink(current, old_prev)
    relink(previous, old_cur)
    return {"current": os.path.basename(old_prev)}


def op_check_current(root: str) -> dict[str, Any]:
    """Resolve current once and judge that release; the caller then uses its own path, whatever flips later."""
    current = os.path.join(root, CURRENT)
    if not os.path.islink(current):
        return {"release": None, "problems": []}
    release = os.path.join(root, os.readlink(current))
    problems = judged(release)
    return {"release": release, "problems": problems, "untrusted": bool(problems) and problems == untrusted(release)}


def op_pip(*args: str) -> dict[str, Any]:
    """Run pip with this interpreter (a venv's), its output sent to stderr, which the host streams line by line."""
    import runpy

    saved_stdout, saved_argv = sys.stdout, sys.argv
    sys.stdout, sys.argv = sys.stderr, ["pip", *args]
    try:
        runpy.run_module("pip", run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        sys.stdout, sys.argv = saved_stdout, saved_argv
    if code:
        raise Refused(f"pip exited with {code}", exit_code=code)
    return {}


OPS: dict[str, Callable[..., dict[str, Any] | None]] = {
    "probe": op_probe, "status": op_status, "hold-lock": op_hold_lock, "begin": op_begin, "repair": op_repair,
    "remove-tree": op_remove_tree, "prepare": op_prepare, "verify": op_verify, "finish": op_finish,
    "rollback": op_rollback, "check-current": op_check_current, "pip": op_pip,
}


def main(argv: list[str] | None = None) -> int:
    """Run one op; print its one-line JSON reply."""
    return run_op(OPS, sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
