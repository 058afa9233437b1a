"""Releases on a board: upload, verify, install, self-test, switch, prune, roll back.

Invariants (everything below exists to keep them):
1. `current` only ever points at a release whose every file matched its
   sha256 on the board and whose `python -m device selftest` passed there.
2. The switch is a rename of a fresh symlink over `current`: a reader sees
   the old release or the new one, never neither.
3. Uploads land in `incoming/<id>/` as `.part` files; an interrupted upload
   is resumed by the next deploy and never becomes current by itself.
4. One deploy at a time per board (`.lock`, made with mkdir, which is atomic).
5. `previous` is the release `current` pointed at before the last switch,
   so `rollback` is one more switch; prune never removes either.

Board layout under the board folder (default ~/edgerl):
    releases/<id>/{bundle/, device/, SHA256SUMS}   incoming/<id>/   venvs/<deps-hash>/
    current -> releases/<id>    previous -> releases/<id>    .lock/    reports/
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy import board_ops
from deploy.install import InstallConfig, ensure_venv
from deploy.targets import DeployError, Target
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


class BoardLock:
    """`.lock` held for the duration of a deploy."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.path = target.path(".lock")

    def __enter__(self) -> BoardLock:
        done = self.target.run(["python3", "-c", board_ops.LOCK, self.path, f"pid {os.getpid()} {time.ctime()}"])
        if done.returncode == 3:
            raise DeployError(f"another deploy is running on {self.target.name} (lock {self.path} since "
                              f"{done.stdout.strip()}); wait for it, or remove the lock if no deploy is running")
        if done.returncode != 0:
            raise DeployError(f"cannot take the deploy lock on {self.target.name}: {done.stderr.strip()[-200:]}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.target.run(["python3", "-c", board_ops.UNLOCK, self.path])


def _space_error(target: Target, err: Exception, need: int) -> DeployError:
    free = json.loads(py(target, board_ops.PROBE, target.root, what="disk check"))["free_bytes"]
    if free < need:
        return DeployError(f"board {target.name} is out of disk space ({free // 1024} KiB free, about "
                           f"{need // 1024} KiB needed); free space there and rerun: the old release is still current")
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
        raise _space_error(target, err, total) from err
    return sent, reused


def verify_upload(target: Target, staging: str) -> None:
    """Every file's sha256 on the board; mismatching files are removed so a rerun uploads them again."""
    done = target.run(["python3", "-c", board_ops.VERIFY, staging], timeout=300)
    if done.returncode != 0:
        bad = [line for line in done.stdout.splitlines() if line]
        raise DeployError(f"on {target.name}, {', '.join(bad) or 'the upload'} did not match its sha256 (tampered or "
                          "damaged); the old release is still current, rerun to upload it again")


def selftest(target: Target, python: str, release_dir: str, timeout: float) -> str:
    """`python -m device selftest` in the release, with the release's own device package."""
    done = target.run([python, "-m", "device", "selftest", f"{release_dir}/bundle"], timeout=timeout,
                      env={"PYTHONPATH": release_dir})
    line = (done.stdout.strip() or done.stderr.strip()).splitlines()
    if done.returncode != 0:
        raise DeployError(f"self-test failed on {target.name}: {line[-1] if line else 'no output'}; "
                          "nothing was switched, the old release is still current")
    return line[-1] if line else ""


def deploy(target: Target, cfg: DeployConfig, say: Callable[[str], None] = print,
           progress: Callable[[str, int, int], None] | None = None) -> DeployResult:
    """Put the bundle on the board as a new verified release and make it current."""
    started = time.perf_counter()
    files = release_files(cfg.bundle)
    sums = sums_text(files)
    rid = release_id(cfg.bundle, sums)
    board = json.loads(py(target, board_ops.BEGIN, target.root, rid, "-", f"pid {os.getpid()} {time.ctime()}",
                          what="starting the deploy"))
    if "locked_since" in board:
        raise DeployError(f"another deploy is running on {target.name} (lock {target.path('.lock')} since "
                          f"{board['locked_since']}); wait for it, or remove the lock if no deploy is running")
    finished = False
    try:
        say(f"{target.name}: {board['machine']}, Python {board['python']}, release {rid}")
        venv_python, venv_name, venv_reused = ensure_venv(target, board, cfg.install, say)
        sent, reused, staging = 0, 0, "-"
        if not board["release_verified"]:
            staging = target.path("incoming", rid)
            sent, reused = upload(target, files, sums, staging, board["current_sums"], progress)
            verify_upload(target, staging)
            say(f"{target.name}: {len(files)} files verified by sha256 ({sent} bytes sent, {reused} reused)")
        tested = staging if staging != "-" else target.path("releases", rid)
        say(f"{target.name}: {selftest(target, venv_python, tested, cfg.selftest_timeout)}")
        done = json.loads(py(target, board_ops.FINISH, target.root, rid, staging, venv_name, str(cfg.keep),
                             what="switching current"))
        finished = True
    finally:
        if not finished:
            target.run(["python3", "-c", board_ops.UNLOCK, target.path(".lock")])
    if done["pruned"]:
        say(f"{target.name}: pruned {', '.join(done['pruned'])}")
    return DeployResult(target.name, rid, sent, reused, venv_name, venv_reused,
                        time.perf_counter() - started, done["previous"])


def rollback(target: Target) -> str:
    """Point current at the previous release; returns its id."""
    with BoardLock(target):
        done = target.run(["python3", "-c", board_ops.ROLLBACK, target.root])
        if done.returncode != 0:
            raise DeployError(f"cannot roll back on {target.name}: {done.stdout.strip() or done.stderr.strip()}")
        return Path(done.stdout.strip()).name


def status(target: Target) -> dict[str, Any]:
    """Current and previous releases, venvs, the board's arch and Python."""
    return json.loads(py(target, board_ops.STATUS, target.root, what="reading status"))
