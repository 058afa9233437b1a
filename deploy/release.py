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

The board layout is `device/layout.py`'s; every step that runs on the board
is an op of `deploy/board/side.py`, this deploying host's own copy.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy import board_client, service, signing
from deploy.install import InstallConfig, ensure_venv
from deploy.link.targets import DeployError, Target
from deploy.lock import BoardLock
from deploy.service import ServiceConfig
from device import layout, trust
from device.manifest import EXIT_INTERRUPTED, EXIT_UNTRUSTED, MANIFEST, load_bundle, sha256_file

DEVICE_DIR = Path(__file__).resolve().parents[1] / "device"


@dataclass(frozen=True)
class DeployConfig:
    """What `edgerl deploy` does on each board."""

    bundle: Path
    keep: int = 3
    """Releases kept on the board (current and previous always are)."""
    install: InstallConfig = field(default_factory=InstallConfig)
    selftest_timeout: float = 300.0
    service: ServiceConfig | None = None
    """Run the release under systemd and commit it only after its health gate (`deploy --service`)."""


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
    gate: dict[str, Any] | None = None
    """How the board's health gate ended (`--service`): its verdict, reason and figures."""
    before: str | None = None
    """The release current named when the deploy began (None on a new board)."""


def release_files(bundle: Path, extras: dict[str, Path] | None = None) -> dict[str, Path]:
    """Relative path on the board -> local file: the bundle, the device package, and a service's extras."""
    manifest = load_bundle(bundle)
    files = {f"{layout.BUNDLE_DIR}/{MANIFEST}": Path(bundle) / MANIFEST}
    files.update({f"{layout.BUNDLE_DIR}/{name}": Path(bundle) / name for name in manifest.files})
    for name in (trust.BUNDLE_SUMS, trust.SIGNATURE):  # a signed bundle's signature travels with it
        if (Path(bundle) / name).is_file():
            files[f"{layout.BUNDLE_DIR}/{name}"] = Path(bundle) / name
    for path in sorted(DEVICE_DIR.glob("*.py")):
        files[f"{layout.DEVICE_DIR}/{path.name}"] = path
    files.update(extras or {})
    return files


def sums_text(files: dict[str, Path]) -> str:
    """SHA256SUMS content (sha256sum's format) for the release."""
    return layout.format_sums({name: sha256_file(p) for name, p in files.items()})


def release_id(bundle: Path, sums: str) -> str:
    """Bundle id plus a digest of every shipped file (code included)."""
    return f"{load_bundle(bundle).bundle_id}-{layout.sums_digest(sums)}"


class Cancelled(DeployError):
    """The user interrupted the deploy before the board switched; the board still runs its old release."""

    exit_code = EXIT_INTERRUPTED


def _space_error(target: Target, err: object, need: int, files: int, staging: str) -> DeployError:
    """The one line for an upload the board refused: out of bytes, out of inodes, or something else."""
    if staging.startswith(target.path(layout.INCOMING) + "/"):
        # A partial upload on a full disk only keeps the board full; resuming it cannot help.
        board_client.call(target, "remove-tree", staging, what="removing the failed upload")
    free = board_client.expect(target, "probe", target.root, what="disk check")
    if free["free_bytes"] < need:
        return DeployError(f"board {target.name} is out of disk space ({free['free_bytes'] // 1024} KiB free after "
                           f"removing the failed upload, about {need // 1024} KiB needed); free space there and "
                           "rerun: the old release is still current")
    if free["free_inodes"] < files:
        return DeployError(f"board {target.name} is out of inodes ({free['free_inodes']} free after removing the "
                           f"failed upload, {files} files to write): its disk has bytes left but no room for more "
                           "files; remove files there (`df -i` shows it) and rerun: the old release is still current")
    return DeployError(f"upload to {target.name} failed: {err}; rerun to resume, the old release is still current")


def upload(target: Target, files: dict[str, Path], sums: str, staging: str, current_sums: dict[str, str],
           progress: Callable[[str, int, int], None] | None = None) -> tuple[int, int]:
    """Put every file into staging, hard-linking those current already has; returns (bytes sent, files reused).

    One remote command plans the upload; the bytes, renames and the SHA256SUMS
    file then go over SFTP, which costs no new session per file.
    """
    mine = layout.parse_sums(sums)
    linkable = sorted(name for name, digest in mine.items() if current_sums.get(name) == digest)
    needed = sorted(set(files) - set(linkable))
    prepared = board_client.call(target, "prepare", target.path(layout.CURRENT), staging, json.dumps(linkable),
                                 json.dumps(needed), what="preparing the upload")
    if prepared.get("no_space"):
        raise _space_error(target, prepared["error"], sum(p.stat().st_size for p in files.values()), len(files),
                           staging)
    if not prepared["ok"]:
        raise DeployError(f"preparing the upload failed on {target.name}: {prepared['error']}")
    todo = prepared["todo"]
    reused = len(linkable) - len(set(todo) & set(linkable))
    total = sum(files[name].stat().st_size - offset for name, offset in todo.items())
    sent = 0
    try:
        for name in sorted(todo):
            final = f"{staging}/{name}"
            sent += target.put(files[name], final + layout.PART,
                               (lambda n, name=name: progress(name, n, total)) if progress else None)
            target.rename(final + layout.PART, final)
        sums_tmp = Path(tempfile.mkstemp(prefix="edgerl-sums-")[1])
        part = f"{staging}/{layout.SUMS}{layout.PART}"
        try:
            sums_tmp.write_text(sums)
            if target.exists(part):
                target.rename(part, f"{staging}/{layout.SUMS}.old")
            target.put(sums_tmp, part)
            target.rename(part, f"{staging}/{layout.SUMS}")
        finally:
            sums_tmp.unlink(missing_ok=True)
    except OSError as err:
        raise _space_error(target, err, total, len(todo) + 1, staging) from err
    return sent, reused


def verify_upload(target: Target, staging: str) -> None:
    """Every file's sha256 on the board; mismatching files are removed so a rerun uploads them again."""
    reply = board_client.call(target, "verify", staging, timeout=300, what="checking sha256 sums")
    if not reply["ok"]:
        bad = reply.get("bad") or []
        raise DeployError(f"on {target.name}, {', '.join(bad) or 'the upload'} did not match its sha256 (tampered or "
                          "damaged); the old release is still current, rerun to upload it again")


def selftest(target: Target, python: str, release_dir: str, timeout: float) -> str:
    """`python -m device selftest` in the release, with the release's own device package."""
    done = target.run([python, "-m", "device", "selftest", f"{release_dir}/{layout.BUNDLE_DIR}"], timeout=timeout,
                      env={"PYTHONPATH": release_dir}, what="the self-test")
    line = (done.stdout.strip() or done.stderr.strip()).splitlines()
    if done.returncode == EXIT_UNTRUSTED:  # refused before anything of the release ran (device.trust)
        raise signing.Untrusted(f"{target.name} refuses the release: {line[-1] if line else 'untrusted'}; the old "
                                "release is still current")
    if done.returncode != 0:
        raise DeployError(f"self-test failed on {target.name}: {line[-1] if line else 'no output'}; "
                          "nothing was switched, the old release is still current")
    return line[-1] if line else ""


def _stage(target: Target, board: dict[str, Any], files: dict[str, Path], sums: str, rid: str,
           progress: Callable[[str, int, int], None]) -> tuple[int, int, str]:
    """Get the release's files onto the board, verified; returns (bytes sent, files reused, staging folder or -)."""
    state = board["release_state"]
    if state not in ("absent", "damaged"):
        return 0, 0, "-"
    if state == "damaged":  # repaired in place: its broken files go, the intact ones stay
        staging = target.path(layout.RELEASES, rid)
        board_client.expect(target, "repair", staging, sums, what="repairing the damaged release")
    else:
        staging = target.path(layout.INCOMING, rid)
    sent, reused = upload(target, files, sums, staging, board["current_sums"], progress)
    verify_upload(target, staging)
    return sent, reused, staging


def _switch(target: Target, lock: BoardLock, rid: str, staging: str, venv: str, keep: int) -> dict[str, Any]:
    lock.ensure()
    try:
        done = board_client.call(target, "finish", target.root, rid, staging, venv, str(keep), lock.owner,
                                 what="switching current")
    except DeployError as err:
        raise DeployError(f"{err}. The switch is one atomic rename: {target.name} runs either its old release "
                          f"or {rid}, never a mix; `edgerl status` says which, and a rerun finishes it") from err
    if done.get("lost_lock"):
        raise DeployError(f"{target.name}: the deploy lock expired before the switch (the link was silent too "
                          "long); nothing was switched, rerun to finish")
    if not done["ok"]:
        raise DeployError(f"switching current failed on {target.name}: {done['error']}; it still runs its old "
                          "release")
    return done


def deploy(target: Target, cfg: DeployConfig, say: Callable[[str], None] = print,
           progress: Callable[[str, int, int], None] | None = None,
           cancel: threading.Event | None = None) -> DeployResult:
    """Put the bundle on the board as a new verified release and make it current.

    `cancel` (set on Ctrl-C) stops the deploy at its next step, never
    between the switch and its report: once the switch has started the
    deploy finishes, so what is printed afterwards is true. A DeployError
    carries the release the board ran when the deploy began (`before`).
    """
    run = _Deploy(target, cfg, say, progress, cancel)
    try:
        return run.run()
    except DeployError as err:
        err.before = run.before
        raise


@dataclass
class _Deploy:
    """One board's deploy, step by step."""

    target: Target
    cfg: DeployConfig
    say: Callable[[str], None]
    progress: Callable[[str, int, int], None] | None
    cancel: threading.Event | None
    before: str | None = None

    def not_cancelled(self, step: str) -> None:
        """Stop here if the user interrupted, saying at which step."""
        if self.cancel is not None and self.cancel.is_set():
            runs = f"it still runs its old release, {self.before}" if self.before else "it had no release before"
            raise Cancelled(f"{self.target.name}: interrupted before the switch ({step}); {runs}, and nothing was "
                            "switched (a rerun resumes what was uploaded)")

    def watched(self, name: str, n: int, total: int) -> None:
        self.not_cancelled(f"uploading {name}")
        if self.progress:
            self.progress(name, n, total)

    def run(self) -> DeployResult:
        target, cfg, say = self.target, self.cfg, self.say
        started = time.perf_counter()
        files = release_files(cfg.bundle, service.release_extras(cfg.service) if cfg.service else None)
        sums = sums_text(files)
        rid = release_id(cfg.bundle, sums)
        with BoardLock(target, say) as lock:
            board = board_client.expect(target, "begin", target.root, rid, what="starting the deploy")
            self.before = board.get("current")
            for note in board["notes"]:
                say(f"{target.name}: {note}")
            say(f"{target.name}: {board['machine']}, Python {board['python']}, release {rid}")
            if cfg.service:
                service.install(target, cfg.service)
                service.wait_pending_gate(target, say)
            self.not_cancelled("the board was checked; its venv not yet")
            venv_python, venv_name, venv_reused = ensure_venv(target, board, cfg.install, say,
                                                              lambda: self.not_cancelled("installing the venv"))
            self.not_cancelled("the venv was ready; the upload not yet")
            sent, reused, staging = _stage(target, board, files, sums, rid, self.watched)
            if staging != "-":
                say(f"{target.name}: {len(files)} files verified by sha256 ({sent} bytes sent, {reused} reused)")
            tested = staging if staging != "-" else target.path(layout.RELEASES, rid)
            say(f"{target.name}: {selftest(target, venv_python, tested, cfg.selftest_timeout)}")
            self.not_cancelled("the self-test had passed")
            if cfg.service:
                service.begin_gate(target, rid, cfg.service)
            done = _switch(target, lock, rid, staging, venv_name, cfg.keep)
            if cfg.service:
                service.switch(target)
        if done["pruned"]:
            say(f"{target.name}: pruned {', '.join(done['pruned'])}")
        gate = service.await_verdict(target, rid, cfg.service, say) if cfg.service else None
        if gate:
            say(f"{target.name}: {service.verdict_line(gate)}")
            service.judge(gate)
        return DeployResult(target.name, rid, sent, reused, venv_name, venv_reused,
                            time.perf_counter() - started, done["previous"], gate, self.before)


def rollback(target: Target, say: Callable[[str], None] = print) -> str:
    """Point current at the previous release, if that release is intact; returns its id."""
    with BoardLock(target, say):
        done = board_client.call(target, "rollback", target.root, what="rolling back")
        if not done["ok"]:
            refusal = signing.Untrusted if done.get("untrusted") else DeployError  # exit 5, as for any release
            raise refusal(f"cannot roll back on {target.name}: {done['error']}; current is unchanged")
        followed = board_client.call(target, "service-follow", target.root, what="restarting the service")
    if not followed["ok"]:
        raise DeployError(f"{target.name}: current is now {done['current']}, but its service was not restarted: "
                          f"{followed['error']}")
    if followed.get("restarted"):
        say(f"{target.name}: the service restarts on {done['current']}")
    return done["current"]


def status(target: Target) -> dict[str, Any]:
    """Current and previous releases, venvs, the board's arch and Python."""
    reply = board_client.expect(target, "status", target.root, what="reading status")
    reply.pop("ok")
    return reply
