"""The board's own module, op by op, imported here as the board runs it: every answer and every refusal, no sshd."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from deploy import board_client
from deploy.board import side as board_side
from device.layout import format_sums, parse_sums, sha256_file, sums_digest
from device.manifest import sha256_file as contract_digest


def reply_of(capsys, *argv: str) -> tuple[int, dict]:
    code = board_side.main(list(argv))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines  # one JSON reply, always
    return code, json.loads(lines[0])


def op(capsys, *argv: str) -> dict:
    code, reply = reply_of(capsys, *argv)
    assert code == 0, reply  # the op answered: a refusal is an answer too
    return reply


def make_release(root: Path, files: dict[str, bytes], verified: bool = True) -> str:
    """A release folder as a deploy leaves it: files, SHA256SUMS, an id ending in the sums' digest."""
    staging = root / "staging"
    for name, data in files.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_bytes(data)
    sums = format_sums({name: sha256_file(staging / name) for name in files})
    (staging / "SHA256SUMS").write_text(sums)
    rid = f"policy-{sums_digest(sums)}"
    (root / "releases").mkdir(parents=True, exist_ok=True)
    staging.rename(root / "releases" / rid)
    if verified:
        (root / "releases" / rid / ".verified").touch()
    return rid


def link(root: Path, name: str, rid: str) -> None:
    (root / name).unlink(missing_ok=True)
    (root / name).symlink_to(Path("releases") / rid)


FILES = {"bundle/policy.onnx": b"model", "device/play.py": b"print('play')\n"}


def test_the_board_hashes_with_the_contracts_one_digest(tmp_path):
    import hashlib

    assert board_side.sha256_file is sha256_file is contract_digest
    path = tmp_path / "f"
    data = os.urandom(3 << 20)  # more than one 1 MiB chunk
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_sums_are_written_and_read_by_one_parser():
    digests = {"b/x": "aa", "a y": "bb"}
    text = format_sums(digests)
    assert text == "bb  a y\naa  b/x\n" and parse_sums(text) == digests
    assert parse_sums("garbage line\n" + text) == digests


def test_a_wrong_command_line_is_usage_with_exit_2(capsys):
    code, reply = reply_of(capsys, "no-such-op")
    assert code == 2 and reply["ok"] is False and "usage" in reply["error"]
    code, reply = reply_of(capsys, "status")  # missing ROOT
    assert code == 2 and reply["ok"] is False and "status:" in reply["error"]


def test_probe_and_status_describe_the_board(tmp_path, capsys):
    root = tmp_path / "board"
    probe = op(capsys, "probe", str(root))
    assert probe["ok"] and root.is_dir() and probe["free_bytes"] > 0 and probe["free_inodes"] > 0
    assert probe["python"] == "{}.{}".format(*sys.version_info[:2])
    rid = make_release(root, FILES)
    link(root, "current", rid)
    status = op(capsys, "status", str(root))
    assert status == {**status, "ok": True, "current": rid, "previous": None, "releases": [rid], "locked": False}


def test_status_sees_a_held_lock(tmp_path, capsys):
    root = tmp_path
    fd = os.open(root / ".deploy.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert op(capsys, "status", str(root))["locked"] is True
    finally:
        os.close(fd)
    assert op(capsys, "status", str(root))["locked"] is False


def _hold(root: Path, owner: str, silence: str = "2") -> subprocess.Popen:
    code = board_client.SHIPPED["side.py"]
    return subprocess.Popen([sys.executable, str(code), "hold-lock", str(root), owner, silence],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(code.parents[1])})


def test_hold_lock_holds_until_its_deploy_stops_feeding_it_and_refuses_a_second(tmp_path):
    first = _hold(tmp_path, "deploy A")
    assert json.loads(first.stdout.readline()) == {"ok": True, "locked": True}
    second = _hold(tmp_path, "deploy B")
    refused = json.loads(second.stdout.readline())
    assert refused["ok"] is False and refused["held_by"] == "deploy A" and refused["quiet_s"] >= 0
    assert second.wait(10) == 0
    first.stdin.write("\n")
    first.stdin.flush()
    first.stdin.close()  # the deploy ended: EOF frees the lock at once
    assert first.wait(10) == 0
    third = _hold(tmp_path, "deploy C", silence="0.5")
    assert json.loads(third.stdout.readline())["locked"] is True
    started = time.monotonic()
    assert third.wait(10) == 0  # no heartbeat: a silent deploy's lock expires by itself
    assert 0.4 < time.monotonic() - started < 5


def test_begin_tidies_failed_uploads_reuses_only_intact_files_and_judges_the_release(tmp_path, capsys):
    root = tmp_path
    rid = make_release(root, FILES)
    link(root, "current", rid)
    (root / "incoming" / "old-upload").mkdir(parents=True)
    (root / "current" / "device" / "play.py").write_bytes(b"edited")
    reply = op(capsys, "begin", str(root), "next-1234")
    assert reply["ok"] and reply["release_state"] == "absent" and not (root / "incoming" / "old-upload").exists()
    assert list(reply["current_sums"]) == ["bundle/policy.onnx"]  # the edited file is not offered for reuse
    assert any("incoming/old-upload" in note for note in reply["notes"])
    assert op(capsys, "begin", str(root), rid)["release_state"] == "damaged"
    fresh = make_release(root / "b", FILES, verified=False)
    assert op(capsys, "begin", str(root / "b"), fresh)["release_state"] == "untested"
    (root / "b" / "releases" / fresh / ".verified").touch()
    assert op(capsys, "begin", str(root / "b"), fresh)["release_state"] == "verified"


def test_repair_drops_only_what_does_not_match(tmp_path, capsys):
    rid = make_release(tmp_path, FILES)
    rel = tmp_path / "releases" / rid
    sums = (rel / "SHA256SUMS").read_text()
    (rel / "device" / "play.py").write_bytes(b"edited")
    assert op(capsys, "repair", str(rel), sums) == {"ok": True, "removed": ["device/play.py"]}
    assert (rel / "bundle" / "policy.onnx").is_file() and not (rel / ".verified").exists()
    (rel / "SHA256SUMS").write_text("edited sums\n")
    op(capsys, "repair", str(rel), sums)
    assert not (rel / "SHA256SUMS").exists()


def test_prepare_links_unchanged_files_and_says_what_to_send_and_from_where(tmp_path, capsys):
    rid = make_release(tmp_path, FILES)
    link(tmp_path, "current", rid)
    staging = tmp_path / "incoming" / "new"
    (staging / "bundle").mkdir(parents=True)
    (staging / "bundle" / "golden.npz.part").write_bytes(b"12345")
    reply = op(capsys, "prepare", str(tmp_path / "current"), str(staging), json.dumps(["device/play.py"]),
               json.dumps(["bundle/golden.npz", "bundle/policy.onnx"]))
    assert reply["todo"] == {"bundle/golden.npz": 5, "bundle/policy.onnx": 0}
    assert (staging / "device" / "play.py").stat().st_ino == (tmp_path / "current" / "device" / "play.py").stat().st_ino


def test_verify_removes_mismatching_files_and_refuses(tmp_path, capsys):
    rid = make_release(tmp_path, FILES)
    rel = tmp_path / "releases" / rid
    assert op(capsys, "verify", str(rel)) == {"ok": True, "files": 2}
    (rel / "bundle" / "policy.onnx").write_bytes(b"damaged in transfer")
    refused = op(capsys, "verify", str(rel))
    assert refused["ok"] is False and refused["bad"] == ["bundle/policy.onnx"]
    assert not (rel / "bundle" / "policy.onnx").exists()  # so a rerun uploads it again
    (rel / "SHA256SUMS").unlink()
    assert op(capsys, "verify", str(rel))["bad"] == ["SHA256SUMS"]


def test_finish_switches_only_for_the_lock_owner_keeps_previous_and_prunes(tmp_path, capsys):
    root = tmp_path
    rids = [make_release(root, {**FILES, "bundle/n": bytes([i])}) for i in range(4)]
    for i, rid in enumerate(rids):
        os.utime(root / "releases" / rid, (1000 + i, 1000 + i))
    link(root, "current", rids[1])
    staging = root / "incoming" / "new"
    staging.parent.mkdir()
    (root / "releases" / rids[3]).rename(staging)
    refused = op(capsys, "finish", str(root), rids[3], str(staging), "venvkey", "3", "me")
    assert refused["ok"] is False and refused["lost_lock"] is True and staging.is_dir()  # nobody holds the lock
    holder = _hold(root, "me", silence="30")
    assert json.loads(holder.stdout.readline())["locked"]
    try:
        assert op(capsys, "finish", str(root), rids[3], str(staging), "venvkey", "3", "other")["lost_lock"]
        done = op(capsys, "finish", str(root), rids[3], str(staging), "venvkey", "3", "me")
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert done["ok"] and done["previous"] == f"releases/{rids[1]}" and done["pruned"] == [rids[0]]
    assert (root / "current").resolve().name == rids[3] and (root / "previous").resolve().name == rids[1]
    assert (root / "current" / ".verified").is_file()
    assert os.readlink(root / "current" / "venv") == "../../venvs/venvkey"


def test_rollback_swaps_to_an_intact_verified_previous_and_refuses_anything_else(tmp_path, capsys):
    root = tmp_path
    old, new = make_release(root, FILES), make_release(root, {**FILES, "bundle/x": b"1"})
    link(root, "current", new)
    assert "no previous release" in op(capsys, "rollback", str(root))["error"]
    link(root, "previous", old)
    (root / "releases" / old / ".verified").unlink()
    assert "never passed its self-test" in op(capsys, "rollback", str(root))["error"]
    (root / "releases" / old / ".verified").touch()
    (root / "releases" / old / "bundle" / "policy.onnx").write_bytes(b"edited")
    assert "policy.onnx was modified" in op(capsys, "rollback", str(root))["error"]
    (root / "releases" / old / "bundle" / "policy.onnx").write_bytes(FILES["bundle/policy.onnx"])
    assert op(capsys, "rollback", str(root)) == {"ok": True, "current": old}
    assert (root / "previous").resolve().name == new


def test_check_current_judges_the_release_current_points_at(tmp_path, capsys):
    assert op(capsys, "check-current", str(tmp_path)) == {"ok": True, "release": None, "problems": []}
    rid = make_release(tmp_path, FILES)
    link(tmp_path, "current", rid)
    assert op(capsys, "check-current", str(tmp_path))["problems"] == []
    sums = tmp_path / "releases" / rid / "SHA256SUMS"
    sums.write_text(sums.read_text().replace("play.py", "other.py"))
    problems = op(capsys, "check-current", str(tmp_path))["problems"]
    assert "SHA256SUMS was modified" in problems and "device/other.py is missing" in problems
    sums.unlink()
    assert op(capsys, "check-current", str(tmp_path))["problems"] == ["SHA256SUMS is missing"]


def test_remove_tree_and_a_full_disk_is_one_reply_not_a_traceback(tmp_path, capsys, monkeypatch):
    (tmp_path / "x" / "y").mkdir(parents=True)
    assert op(capsys, "remove-tree", str(tmp_path / "x"))["ok"] and not (tmp_path / "x").exists()

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(board_side.os, "makedirs", full)
    reply = op(capsys, "probe", str(tmp_path))
    assert reply["ok"] is False and reply["no_space"] is True and "No space left" in reply["error"]
    assert reply["free_inodes"] > 0  # the figures the host turns into its free/needed line


def test_pip_runs_pip_with_its_output_on_stderr(capsys):
    reply = op(capsys, "pip", "--version")
    assert reply == {"ok": True}
    refused = op(capsys, "pip", "no-such-pip-command")
    assert refused["ok"] is False and refused["exit_code"] != 0


def test_every_board_module_runs_alone_on_a_bare_python(tmp_path):
    # What ships, and nothing else: no site-packages (so no numpy, no edgerl), no environment variables; each
    # script imports its siblings as the board has them, side by side.
    ship = tmp_path / "ship"
    for name, path in board_client.SHIPPED.items():
        (ship / name).parent.mkdir(parents=True, exist_ok=True)
        (ship / name).write_bytes(path.read_bytes())

    def board_python(script: str, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-E", "-s", "-S", str(ship / script), *argv], capture_output=True,
                              text=True, timeout=60)

    done = board_python("side.py", "probe", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    for script, op in (("fleet_line.py", "fleet-status"), ("data.py", "data-list")):
        done = board_python(script, op, str(tmp_path / "b"))
        assert done.returncode == 0 and json.loads(done.stdout)["ok"] is True, (script, done.stderr)
    for script in ("service.py", "trust.py"):
        done = board_python(script, "no-such-op")
        assert done.returncode == 2 and "OP one of" in json.loads(done.stdout)["error"], (script, done.stderr)


def test_the_board_code_is_shipped_once_and_a_damaged_copy_is_replaced(tmp_path):
    from deploy.link.targets import LocalTarget

    root = tmp_path / "board"
    target = LocalTarget(root)
    folder = Path(board_client.ensure_code(target))
    assert folder == root / ".board" / board_client.CODE_DIGEST
    assert (folder / "side.py").read_bytes() == board_client.SHIPPED["side.py"].read_bytes()
    (folder / "side.py").write_text("print('not the host code')\n")
    assert board_client.ensure_code(target) == str(folder)  # checked once per target
    again = LocalTarget(root)
    assert board_client.expect(again, "status", again.root, what="status")["current"] is None
    assert (folder / "side.py").read_bytes() == board_client.SHIPPED["side.py"].read_bytes()


def test_the_whole_board_folder_ships_with_the_device_files_it_imports():
    # tests/test_layout.py holds deploy/board/ to the stdlib and these device files; a module added there
    # without being shipped would fail on the board only.
    folder = Path(board_side.__file__).parent
    assert {n for n in board_client.SHIPPED if "/" not in n} == {p.name for p in folder.glob("*.py")} - {"__init__.py"}
    assert {n for n in board_client.SHIPPED if n.startswith("device/")} == {
        "device/__init__.py", "device/in_use.py", "device/layout.py", "device/manifest.py", "device/trust.py"}

