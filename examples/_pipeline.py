"""The whole road for an example: export -> verify -> deploy to a local board -> self-test (-> play)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path


class _Tee(io.StringIO):
    """Shows a command's output as it comes and keeps it for reading back (the board's status is JSON)."""

    def write(self, text: str) -> int:
        sys.__stdout__.write(text)
        return super().write(text)


def _edgerl(*args: object) -> str:
    # In this process: each step as its own `edgerl` process would pay torch's imports again (~5 s a step).
    from host.cli import main

    out = _Tee()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    if code:
        sys.exit(f"edgerl {args[0]} failed (exit {code}): see the error above")
    return out.getvalue()


def run_pipeline(factory: str, work: Path, aoti: bool = False, play_steps: int | None = None) -> None:
    """Run every step with the real CLI (deploy self-tests on the board); exit non-zero at the first failure."""
    work.mkdir(parents=True, exist_ok=True)
    bundle, board = work / "bundle", work / "board"
    _edgerl("export", "--from", factory, "--out", bundle, *(["--aoti"] if aoti else []))
    _edgerl("deploy", bundle, "--to", f"local:{board}")
    status = json.loads(_edgerl("status", "--on", f"local:{board}"))
    print(f"board's current release: {status['current']}")
    if play_steps:
        _edgerl("run", "--on", f"local:{board}", "--max-steps", play_steps, "--reports", work / "reports")


def example_args(doc: str, default_out: str, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """An example script's command line: --out and --aoti, plus whatever the script added to `parser`."""
    parser = parser or argparse.ArgumentParser()
    parser.description = doc.splitlines()[0]
    parser.add_argument("--out", type=Path, default=Path(default_out), help="work folder")
    parser.add_argument("--aoti", action=argparse.BooleanOptionalAction, default=False,
                        help="also compile the AOTInductor package (host-only, ~25 s; default --no-aoti)")
    return parser.parse_args()
