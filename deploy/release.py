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


def _current_sums(target: Target) -> dict[str, str]:
    done = target.run(["cat", target.path("current", "SHA256SUMS")])
    if done.returncode != 0:
        return {}
    pairs = (line.split("  ", 1) for line in done.stdout.splitlines() if "  " in line)
    return {name: digest for digest, name in pairs}


def _space_error(target: Target, err: Exception, need: int) -> DeployError:
    free = json.loads(py(target, board_ops.PROBE, target.root, what="disk check"))["free_bytes"]
    if free < need:
        return DeployError(f"board {target.name} is out of disk space ({free // 1024} KiB free, about "
                           f"{need // 1024} KiB needed); free space there and rerun: the old release is still current")
    return DeployError(f"upload to {target.name} failed: {err}; rerun to resume, the old release is still current")


def upload(target: Target, files: dict[str, Path], sums: str, staging: str,
           progress: Callable[[str, int, int], None] | None = None) -> tuple[int, int]:
    """Put every file into staging (linking unchanged ones from current); returns (bytes sent, files reused)."""
    current = _current_sums(target)
    mine = {name: digest for digest, name in (line.split("  ", 1) for line in sums.splitlines())}
    same = [name for name, digest in mine.items() if current.get(name) == digest]
    target.check(["mkdir", "-p", staging], "creating the upload folder")
    missing = set()
    if same:
        out = py(target, board_ops.LINK_OR_MISSING, target.path("current"), staging, *same, what="reusing files")
        missing = {line for line in out.splitlines() if line}
    reused = len(same) - len(missing)
    sent = 0
    total = sum(p.stat().st_size for name, p in files.items() if name not in same or name in missing)
    for name, local in sorted(files.items()):
        if name in same and name not in missing:
            continue
        final = f"{staging}/{name}"
        if target.run(["test", "-f", final]).returncode == 0:
            continue  # finished by an earlier, interrupted deploy; verified below with the rest
        target.check(["mkdir", "-p", str(Path(final).parent)], "creating folders")
        try:
            sent += target.put(local, final + ".part", (lambda n, name=name: progress(name, n, total))
                               if progress else None)
        except OSError as err:
            raise _space_error(target, err, total) from err
        target.check(["mv", "-f", final + ".part", final], "finishing an upload")
    sums_tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"edgerl-sums-{os.getpid()}-{time.time_ns()}"
    sums_tmp.write_text(sums)
    try:
        target.run(["rm", "-f", f"{staging}/SHA256SUMS", f"{staging}/SHA256SUMS.part"])
        target.put(sums_tmp, f"{staging}/SHA256SUMS")
    except OSError as err:
        raise _space_error(target, err, total) from err
    finally:
        sums_tmp.unlink(missing_ok=True)
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
    release_dir = target.path("releases", rid)
    with BoardLock(target):
        board = json.loads(py(target, board_ops.PROBE, target.root, what="probing the board"))
        say(f"{target.name}: {board['machine']}, Python {board['python']}, release {rid}")
        venv_python, venv_name, venv_reused = ensure_venv(target, board, cfg.install, say)
        sent, reused = 0, 0
        if target.run(["test", "-f", f"{release_dir}/.verified"]).returncode != 0:
            staging = target.path("incoming", rid)
            sent, reused = upload(target, files, sums, staging, progress)
            verify_upload(target, staging)
            say(f"{target.name}: {len(files)} files verified by sha256 ({sent} bytes sent, {reused} reused)")
            say(f"{target.name}: {selftest(target, venv_python, staging, cfg.selftest_timeout)}")
            target.check(["mkdir", "-p", target.path("releases")], "creating releases/")
            target.run(["rm", "-rf", release_dir])
            target.check(["mv", staging, release_dir], "moving the release into place")
            target.check(["touch", f"{release_dir}/.verified"], "marking the release verified")
        else:
            say(f"{target.name}: {selftest(target, venv_python, release_dir, cfg.selftest_timeout)}")
        target.check(["ln", "-sfn", f"../../venvs/{venv_name}", f"{release_dir}/venv"], "linking the venv")
        previous = py(target, board_ops.SWITCH, target.root, rid, what="switching current").strip() or None
        pruned = py(target, board_ops.PRUNE, target.root, str(cfg.keep), what="pruning").split()
        if pruned:
            say(f"{target.name}: pruned {', '.join(pruned)}")
    return DeployResult(target.name, rid, sent, reused, venv_name, venv_reused,
                        time.perf_counter() - started, previous)


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
