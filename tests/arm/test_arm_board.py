"""The device package on an emulated aarch64 board (Debian arm64 under qemu): `pytest -m arm`."""

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import arm_board  # noqa: E402

from device.play import PlayConfig, play  # noqa: E402

pytestmark = pytest.mark.arm


@pytest.fixture(scope="module")
def board():
    try:
        rootfs = arm_board.build(say=lambda line: print(line, flush=True))
    except arm_board.BoardError as err:
        pytest.fail(f"cannot build the emulated aarch64 board: {err}")
    arm_board.install_code(rootfs)
    return rootfs


def _on_board(board, bundle: Path, name: str) -> str:
    dest = board / "tmp" / "edgerl-tests" / name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(bundle, dest)
    return f"/tmp/edgerl-tests/{name}"


def test_board_is_really_aarch64(board):
    done = arm_board.run(["python", "-c", "import platform, onnxruntime, ale_py; print(platform.machine())"], board)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "aarch64"


@pytest.mark.parametrize("kind", ["stacked", "lstm"])
def test_selftest_passes_on_aarch64_with_a_bundle_exported_on_x86(board, bundles, kind):
    path = _on_board(board, bundles[kind], kind)
    done = arm_board.run(["python", "-m", "device", "selftest", path], board)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": ok" in done.stdout


def test_aarch64_plays_the_same_game_as_x86(board, bundles):
    path = _on_board(board, bundles["stacked"], "play")
    done = arm_board.run(["python", "-m", "device", "play", path, "--seed", "3", "--max-steps", "300", "--quiet",
                          "--report", f"{path}/report.json"], board)
    assert done.returncode == 0, done.stderr
    arm = json.loads((board / path.lstrip("/") / "report.json").read_text())
    x86 = play(PlayConfig(bundles["stacked"], episodes=1, seed=3, max_steps=300))
    assert arm["machine"]["machine"] == "aarch64"
    assert arm["episodes"][0]["actions_hex"] == x86["episodes"][0]["actions_hex"]
    assert arm["episodes"][0]["score"] == x86["episodes"][0]["score"]
    print(f"emulated aarch64: {arm['steps_per_s']:.0f} steps/s, policy p50 {arm['policy_latency']['p50_ms']:.2f} ms "
          f"p99 {arm['policy_latency']['p99_ms']:.2f} ms (x86: {x86['steps_per_s']:.0f} steps/s)")


def test_wheelhouse_deploy_and_run_on_a_genuinely_aarch64_board(board, bundles, tmp_path):
    import socket
    import subprocess
    import time

    from tests_ssh import free_port, keygen

    keygen(tmp_path / "key")
    keygen(tmp_path / "host_key")
    port = free_port()
    sshd = arm_board.start_sshd(port, tmp_path / "key.pub", tmp_path / "host_key", board)
    try:
        for _ in range(300):  # an emulated sshd takes a few seconds to listen
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert sshd.poll() is None, sshd.stderr.read()
                time.sleep(0.2)
        host_pub = " ".join((tmp_path / "host_key.pub").read_text().split()[:2])
        (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
        shutil.rmtree(board / "root" / "edgerl", ignore_errors=True)
        flags = ["--known-hosts", tmp_path / "known_hosts", "--ssh-config", tmp_path / "none", "-i", tmp_path / "key"]
        env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin:/usr/sbin"}

        def edgerl(*args):
            return subprocess.run([sys.executable, "-m", "host.cli", *map(str, args)], capture_output=True,
                                  text=True, timeout=1800, env=env)

        deployed = edgerl("deploy", bundles["stacked"], "--to", f"root@127.0.0.1:{port}", "--wheelhouse", *flags)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert "aarch64" in deployed.stdout and "(offline" in deployed.stdout
        wheels = sorted(p.name for p in (board / "root" / "edgerl" / "wheelhouse").rglob("*.whl"))
        binary = [w for w in wheels if not w.endswith("-none-any.whl")]  # pure-Python deps have no arch
        assert any(w.startswith("onnxruntime-") for w in binary) and all("aarch64" in w for w in binary), wheels
        ran = edgerl("run", "--on", f"root@127.0.0.1:{port}", "--max-steps", 50, "--reports", tmp_path / "r", *flags)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "aarch64" in ran.stdout
    finally:
        sshd.terminate()
        sshd.wait(timeout=30)
