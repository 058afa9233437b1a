"""The booting aarch64 board (tools/boot_board.py): built once, booted once per session, reached as `pi`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from board_world import Pi, boot_board, probe_rate, record  # noqa: E402


@pytest.fixture(scope="session")
def board(tmp_path_factory):
    try:
        boot_board.build(say=lambda line: print(line, flush=True))
    except (boot_board.BootError, boot_board.arm_board.BoardError, subprocess.CalledProcessError) as err:
        pytest.fail(f"cannot build the booting aarch64 board (needs root, debootstrap, qemu-user-static, "
                    f"qemu-system-arm, qemu-utils): {err}")
    machine = boot_board.Board(tmp_path_factory.mktemp("board"))
    took = machine.boot()
    record("boot_to_sshd_s", round(took, 1))
    yield machine
    machine.shutdown()


@pytest.fixture(scope="session")
def pi(board, tmp_path_factory, cart_bundle) -> Pi:
    home = tmp_path_factory.mktemp("host")
    (home / "known_hosts").write_text(board.host_key_line)
    probed = probe_rate(board, cart_bundle, home)
    record("board_rate_probe", probed)
    print(f"\nthe board's loop: {probed['iteration_ms_p99']:.1f} ms at p99, so healthy releases run at "
          f"{probed['hz']} Hz", flush=True)
    return Pi(board, home / "known_hosts", probed["hz"])
