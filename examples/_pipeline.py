"""The whole road for an example: export -> verify -> deploy to a local board -> self-test (-> play)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def _edgerl(*args: object) -> str:
    run = subprocess.run([sys.executable, "-m", "host.cli", *map(str, args)], capture_output=True, text=True)
    print(run.stdout, end="")
    if run.returncode:
        last = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"
        sys.exit(f"edgerl {args[0]} failed: {last}")
    return run.stdout


def run_pipeline(factory: str, work: Path, aoti: bool = True, play_steps: int | None = None) -> None:
    """Run every step with the real CLI (deploy self-tests on the board); exit non-zero at the first failure."""
    work.mkdir(parents=True, exist_ok=True)
    bundle, board = work / "bundle", work / "board"
    _edgerl("export", "--from", factory, "--out", bundle, *([] if aoti else ["--no-aoti"]))
    _edgerl("deploy", bundle, "--to", f"local:{board}")
    status = json.loads(_edgerl("status", "--on", f"local:{board}"))
    print(f"board's current release: {status['current']}")
    if play_steps:
        _edgerl("run", "--on", f"local:{board}", "--max-steps", play_steps, "--reports", work / "reports")


def example_args(doc: str, default_out: str, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """An example script's command line: --out and --no-aoti, plus whatever the script added to `parser`."""
    parser = parser or argparse.ArgumentParser()
    parser.description = doc.splitlines()[0]
    parser.add_argument("--out", type=Path, default=Path(default_out), help="work folder")
    parser.add_argument("--no-aoti", action="store_true", help="skip the AOTInductor package")
    return parser.parse_args()
