"""Releases on a board: upload, verify, install, self-test, switch, prune, roll back.

Invariants (everything below exists to keep them):
1. `current` only ever points at a release whose every file matched its
   sha256 on the board and whose `python -m device selftest` passed there.
2. The switch is a rename of a fresh symlink over `current`: a reader sees
   the old release or the new one, never neither.
3. Uploads land in `incoming/<id>/` as `.part` files; an interrupted upload
   is resumed by the next deploy and never becomes current by itself. A
   damaged release is repaired in place by redeploying it; nothing runs or
   is rolled back to without passing its checksums first.
4. One deploy at a time per board: a kernel lock (flock on `.deploy.lock`)
   held by a board process that lives only as long as its deploy feeds it,
   so a killed or cut-off deploy never leaves a lock behind.
5. `previous` is the release `current` pointed at before the last switch,
   so `rollback` is one more switch; prune never removes either.

Board layout under the board folder (default ~/edgerl):
    releases/<id>/{bundle/, device/, SHA256SUMS}   incoming/<id>/   venvs/<deps-hash>/
    current -> releases/<id>    previous -> releases/<id>    .deploy.lock    reports/
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy import board_ops
from deploy.install import InstallConfig, ensure_venv
from deploy.targets import DeployError, Spawned, Target
from device.manifest import MANIFEST, load_bundle, sha256_file

DEVICE_DIR = Path(__file__).resolve().parents[1] / "device"


@dataclass(frozen=True)
class DeployConfig:
    """What `edgerl deploy` does on each board."""

    bundle: Path
    keep: int = 3
    """Releases kept on the board (current and previous always are)."""
    install: InstallConfig = field(default_factory=InstallConfig)
    selftest_timeout: float = 300.0


@dataclass
class DeployResult:
    """What happened on one board."""

    target: str
    release: str
    uploaded_bytes: int
    reused_files: int
    venv: str
    venv_reused: bool
    seconds: float
    previous: str | None


def release_files(bundle: Path) -> dict[str, Path]:
    """Relative path on the board -> local file, for the bundle and the device package."""
    manifest = load_bundle(bundle)
    files = {f"bundle/{MANIFEST}": Path(bundle) / MANIFEST}
    files.update({f"bundle/{name}": Path(bundle) / name for name in manifest.files})
    for path in sorted(DEVICE_DIR.glob("*.py")):
        files[f"device/{path.name}"] = path
    return files


def sums_text(files: dict[str, Path]) -> str:
    """SHA256SUMS content (sha256sum's format) for the release."""
    return "".join(f"{sha256_file(p)}  {name}\n" for name, p in sorted(files.items()))


def release_id(bundle: Path, sums: str) -> str:
    """Bundle id plus a digest of every shipped file (code included)."""
    return f"{load_bundle(bundle).bundle_id}-{hashlib.sha256(sums.encode()).hexdigest()[:8]}"


def py(target: Target, code: str, *args: str, what: str, timeout: float = 120) -> str:
    """Run one of board_ops' snippets with the board's python3."""
    return target.check(["python3", "-c", code, *args], what, timeout=timeout).stdout


class Cancelled(DeployError):
    """The user interrupted the deploy before the board switched; the board still runs its old release."""

    exit_code = 130


class BoardLock:
    """The board's deploy lock, held by a board process fed by our heartbeat (board_ops.HOLD_LOCK).

    The kernel releases it when that process ends: when we close it, when
    this process dies (the connection closes), or when our heartbeat stops
    for the board's silence timeout (a cut link). A lock whose holder has
    stopped hearing from its deploy is waited out, with a line saying so.
    """

    def __init__(self, target: Target, say: Callable[[str], None] = print) -> None:
        self.target, self.say = target, say
        self.owner = f"{socket.gethostname()} pid {os.getpid()} {uuid.uuid4().hex[:8]} since {time.ctime()}"
        self._stop = threading.Event()
        self._proc: Spawned | None = None

    def _try(self) -> tuple[Spawned | None, dict[str, Any]]:
        t = self.target
        proc = t.spawn(["python3", "-c", board_ops.HOLD_LOCK, t.root, self.owner, str(t.silence_timeout)],
                       what="taking the deploy lock")
        line = proc.readline(timeout=t.silence_timeout + 2 * t.heartbeat)
        try:
            answer = json.loads(line)
        except ValueError:
            proc.close()
            if not line:
                raise t.lost("taking the deploy lock") from None
            raise DeployError(f"cannot take the deploy lock on {t.name}: {line.strip()[-200:]}") from None
        if answer.get("locked"):
            return proc, answer
        proc.close()
        return None, answer

    def ensure(self) -> None:
        """Hold the lock again if a reconnect ended its holder (its channel died with the old connection).

        Another deploy may have taken it in between; then the switch, which
        checks the owner, refuses instead of mixing two deploys.
        """
        if self._proc is None or self._proc.alive():
            return
        self._proc.close()
        deadline = time.monotonic() + self.target.silence_timeout
        while True:
            self._proc, answer = self._try()
            if self._proc is not None:
                return
            if answer.get("held_by") != self.owner or time.monotonic() > deadline:
                raise DeployError(f"{self.target.name}: the deploy lock was taken by another deploy "
                                  f"({answer.get('held_by')}) while the link was down; nothing was switched")
            time.sleep(0.2)  # our old holder has not seen its connection close yet

    def __enter__(self) -> BoardLock:
        t = self.target
        deadline = None
        while True:
            self._proc, answer = self._try()
            if self._proc is not None:
                break
            quiet = float(answer.get("quiet_s", 0.0))
            if quiet > 3 * t.heartbeat:  # its deploy stopped feeding it: the holder exits at the silence timeout
                if deadline is None:
                    wait = max(0.0, t.silence_timeout - quiet) + 3 * t.heartbeat
                    deadline = time.monotonic() + wait
                    self.say(f"{t.name}: the lock is held by a deploy that went silent {quiet:.0f} s ago "
                             f"({answer.get('held_by')}); waiting up to {wait:.0f} s for it to expire")
                if time.monotonic() < deadline:
                    time.sleep(min(1.0, t.heartbeat))
                    continue
            raise DeployError(f"another deploy is running on {t.name} ({answer.get('held_by')}); wait for it to "
                              "finish (its lock goes away by itself when it ends or dies)")
        threading.Thread(target=self._beat, daemon=True, name=f"edgerl-lock-{t.name}").start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.target.heartbeat):
            if self._proc is not None:
                self._proc.write(b"\n")

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.close()


def _space_error(target: Target, err: Exception, need: int, staging: str) -> DeployError:
    if staging.startswith(target.path("incoming") + "/"):
        # A partial upload on a full disk only keeps the board full; resuming it cannot help.
        target.run(["python3", "-c", board_ops.REMOVE_TREE, staging], what="removing the failed upload")
    free = json.loads(py(target, board_ops.PROBE, target.root, what="disk check"))["free_bytes"]
    if free < need:
        return DeployError(f"board {target.name} is out of disk space ({free // 1024} KiB free after removing the "
                           f"failed upload, about {need // 1024} KiB needed); free space there and rerun: the old "
                           "release is still current")
    return DeployError(f"upload to {target.name} failed: {err}; rerun to resume, the old release is still current")


def upload(target: Target, files: dict[str, Path], sums: str, staging: str, current_sums: dict[str, str],
           progress: Callable[[str, int, int], None] | None = None) -> tuple[int, int]:
    """Put every file into staging, hard-linking those current already has; returns (bytes sent, files reused).

    One remote command plans the upload; the bytes, renames and the SHA256SUMS
    file then go over SFTP, which costs no new session per file.
    """
    mine = {name: digest for digest, name in (line.split("  ", 1) for line in sums.splitlines())}
    linkable = sorted(name for name, digest in mine.items() if current_sums.get(name) == digest)
    needed = sorted(set(files) - set(linkable))
    todo = json.loads(py(target, board_ops.PREPARE, target.path("current"), staging, json.dumps(linkable),
                         json.dumps(needed), what="preparing the upload"))
    reused = len(linkable) - len(set(todo) & set(linkable))
    total = sum(files[name].stat().st_size - offset for name, offset in todo.items())
    sent = 0
    try:
        for name in sorted(todo):
            final = f"{staging}/{name}"
            sent += target.put(files[name], final + ".part",
                               (lambda n, name=name: progress(name, n, total)) if progress else None)
            target.rename(final + ".part", final)
        sums_tmp = Path(tempfile.mkstemp(prefix="edgerl-sums-")[1])
        try:
            sums_tmp.write_text(sums)
            if target.exists(f"{staging}/SHA256SUMS.part"):
                target.rename(f"{staging}/SHA256SUMS.part", f"{staging}/SHA256SUMS.old")
            target.put(sums_tmp, f"{staging}/SHA256SUMS.part")
            target.rename(f"{staging}/SHA256SUMS.part", f"{staging}/SHA256SUMS")
        finally:
            sums_tmp.unlink(missing_ok=True)
    except OSError as err:
        raise _space_error(target, err, total, staging) from err
    return sent, reused


def verify_upload(target: Target, staging: str) -> None:
    """Every file's sha256 on the board; mismatching files are removed so a rerun uploads them again."""
    done = target.run(["python3", "-c", board_ops.VERIFY, staging], timeout=300, what="checking sha256 sums")
    if done.returncode != 0:
        bad = [line for line in done.stdout.splitlines() if line]
        raise DeployError(f"on {target.name}, {', '.join(bad) or 'the upload'} did not match its sha256 (tampered or "
                          "damaged); the old release is still current, rerun to upload it again")


def selftest(target: Target, python: str, release_dir: str, timeout: float) -> str:
    """`python -m device selftest` in the release, with the release's own device package."""
    done = target.run([python, "-m", "device", "selftest", f"{release_dir}/bundle"], timeout=timeout,
                      env={"PYTHONPATH": release_dir}, what="the self-test")
    line = (done.stdout.strip() or done.stderr.strip()).splitlines()
    if done.returncode != 0:
        raise DeployError(f"self-test failed on {target.name}: {line[-1] if line else 'no output'}; "
                          "nothing was switched, the old release is still current")
    return line[-1] if line else ""


def deploy(target: Target, cfg: DeployConfig, say: Callable[[str], None] = print,
           progress: Callable[[str, int, int], None] | None = None,
           cancel: threading.Event | None = None) -> DeployResult:
    """Put the bundle on the board as a new verified release and make it current.

    `cancel` (set on Ctrl-C) stops the deploy at its next step, never
    between the switch and its report: once the switch has started the
    deploy finishes, so what is printed afterwards is true.
    """
    started = time.perf_counter()
    files = release_files(cfg.bundle)
    sums = sums_text(files)
    rid = release_id(cfg.bundle, sums)

    def not_cancelled() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"{target.name}: interrupted before the switch; it still runs its old release "
                            "(rerun to resume the upload)")

    def watched(name: str, n: int, total: int) -> None:
        not_cancelled()
        if progress:
            progress(name, n, total)

    with BoardLock(target, say) as lock:
        board = json.loads(py(target, board_ops.BEGIN, target.root, rid, what="starting the deploy"))
        for note in board["notes"]:
            say(f"{target.name}: {note}")
        say(f"{target.name}: {board['machine']}, Python {board['python']}, release {rid}")
        not_cancelled()
        venv_python, venv_name, venv_reused = ensure_venv(target, board, cfg.install, say)
        not_cancelled()
        sent, reused, staging = 0, 0, "-"
        state = board["release_state"]
        if state in ("absent", "damaged"):
            if state == "damaged":  # repaired in place: its broken files go, the intact ones stay
                staging = target.path("releases", rid)
                py(target, board_ops.REPAIR, staging, sums, what="repairing the damaged release")
            else:
                staging = target.path("incoming", rid)
            sent, reused = upload(target, files, sums, staging, board["current_sums"], watched)
            verify_upload(target, staging)
            say(f"{target.name}: {len(files)} files verified by sha256 ({sent} bytes sent, {reused} reused)")
        tested = staging if staging != "-" else target.path("releases", rid)
        say(f"{target.name}: {selftest(target, venv_python, tested, cfg.selftest_timeout)}")
        not_cancelled()
        lock.ensure()
        try:
            done = json.loads(py(target, board_ops.FINISH, target.root, rid, staging, venv_name, str(cfg.keep),
                                 lock.owner, what="switching current"))
        except DeployError as err:
            raise DeployError(f"{err}. The switch is one atomic rename: {target.name} runs either its old release "
                              f"or {rid}, never a mix; `edgerl status` says which, and a rerun finishes it") from err
        if done.get("lost_lock"):
            raise DeployError(f"{target.name}: the deploy lock expired before the switch (the link was silent too "
                              "long); nothing was switched, rerun to finish")
    if done["pruned"]:
        say(f"{target.name}: pruned {', '.join(done['pruned'])}")
    return DeployResult(target.name, rid, sent, reused, venv_name, venv_reused,
                        time.perf_counter() - started, done["previous"])


def rollback(target: Target, say: Callable[[str], None] = print) -> str:
    """Point current at the previous release, if that release is intact; returns its id."""
    with BoardLock(target, say):
        done = json.loads(py(target, board_ops.ROLLBACK, target.root, what="rolling back"))
    if "refused" in done:
        raise DeployError(f"cannot roll back on {target.name}: {done['refused']}; current is unchanged")
    return done["current"]


def status(target: Target) -> dict[str, Any]:
    """Current and previous releases, venvs, the board's arch and Python."""
    return json.loads(py(target, board_ops.STATUS, target.root, what="reading status"))
