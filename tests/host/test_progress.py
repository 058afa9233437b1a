"""Long work shows a bar with its rate and estimate on a terminal, whatever size the terminal says it is, and
nothing when the output is not a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import in_process

REPO = Path(__file__).resolve().parents[2]
EXPORT = ("export", "--untrained", "--policy", "dqn", "--no-aoti", "--verify-steps", "100")


def on_a_terminal(argv: list[str]) -> str:
    """What a terminal shows for argv: a pty nobody sized (0 columns), as `script` or a CI runner gives."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=REPO, close_fds=True)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    assert proc.wait(timeout=300) == 0, shown.decode(errors="replace")[-2000:]
    os.close(master)
    return shown.decode(errors="replace").replace("\r", "\n")


def test_export_shows_the_eager_rollout_and_each_backends_run_with_rate_and_estimate(tmp_path):
    shown = on_a_terminal([sys.executable, "-m", "host.cli", *EXPORT, "--out", str(tmp_path / "b")])
    for label in ("eager", "onnx", "pt2"):
        bars = [line for line in shown.splitlines() if line.strip().startswith(f"{label}:") and "/100" in line]
        assert bars, f"no {label} bar in:\n{shown[-3000:]}"
        assert any("step/s]" in b and "<" in b for b in bars), bars[-3:]  # the rate, and the time left
    quiet = in_process.edgerl("verify", tmp_path / "b", "--steps", "50")  # not a terminal: the lines, no bar
    assert quiet.returncode == 0 and "step/s" not in quiet.stderr + quiet.stdout and "verify ok" in quiet.stdout
