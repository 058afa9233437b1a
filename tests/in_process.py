"""`edgerl` called in-process: what a user's shell runs, without paying a new interpreter each time.

`edgerl export` in a fresh process spends ~7 s importing torch before it does anything; the suite calls the CLI
well over a hundred times. A test uses `edgerl` wherever the process boundary is not what it checks, and keeps a
real subprocess for exit codes on signals, Ctrl-C, torch-free imports and the board side.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

# AOTInductor imports setuptools. In a fresh `edgerl export` nothing came first; in this long process
# tests/deploy/board/test_board_side.py runs the board's pip op in-process, and importing pip switches setuptools'
# distutils shim off for good, so a later first import of setuptools fails its own check inside AOTInductor
# ("InductorError: AssertionError: .../distutils/core.py"). Imported before anything else, it never runs that check.
import setuptools  # noqa: F401, E402


@dataclass
class Ran:
    """What `subprocess.run(..., capture_output=True, text=True)` would have returned."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


_ONE_AT_A_TIME = threading.Lock()
"""The redirected streams, environment and working folder are the process's: two calls at once would mix them."""


@contextlib.contextmanager
def _environment(env: Mapping[str, str] | None) -> Iterator[None]:
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _folder(cwd: Path | str | None) -> Iterator[None]:
    if cwd is None:
        yield
        return
    saved = os.getcwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved)


class _TimedOut(BaseException):
    """Raised in the command by the alarm; a BaseException, so no `except Exception` on the way swallows it."""


@contextlib.contextmanager
def _bounded(seconds: float) -> Iterator[None]:
    """What `subprocess.run(timeout=...)` gave: a command that hangs (a dead link that paramiko waits on) fails the
    test instead of the whole run. The alarm interrupts the main thread, where pytest and its xdist workers run."""
    def ring(*_: object) -> None:
        raise _TimedOut

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def edgerl(*args: object, env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
           timeout: float = 900) -> Ran:
    """`edgerl ARGS...` in this process: its exit code and what it printed, as the shell would see them.

    Raises subprocess.TimeoutExpired after `timeout` seconds, as subprocess.run would.
    """
    from host.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with _ONE_AT_A_TIME, _environment(env), _folder(cwd), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            with _bounded(timeout):
                code = main(argv)
        except SystemExit as done:  # argparse: --help is 0, a usage error 2
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if isinstance(done.code, str):
                print(done.code, file=sys.stderr)
        except _TimedOut:
            raise subprocess.TimeoutExpired(["edgerl", *argv], timeout, out.getvalue(), err.getvalue()) from None
        finally:
            sys.stdout.flush()
    return Ran([sys.executable, "-m", "host.cli", *argv], code, out.getvalue(), err.getvalue())
