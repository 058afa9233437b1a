"""What both command lines share: one-line usage errors (exit 2), and outputs checked before any work."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import NoReturn

from device.manifest import EXIT_BAD_INPUT


def positive(text: str) -> int:
    """A positive integer."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_number(text: str) -> float:
    """A positive, finite number (a rate, a duration)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):  # nan fails the comparison too
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its usage error said in one line that points at --help instead of printing the usage."""

    def error(self, message: str) -> NoReturn:
        """Exit 2 with `PROG: error: MESSAGE (see PROG --help)`."""
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def unwritable(path: Path, start: Path | None = None) -> str | None:
    """Why a file or folder cannot be made at `path`, or None.

    Its nearest existing folder (from `start`, default `path`) is tried with a real file, made and removed at
    once: root passes every permission check, yet cannot write in /proc or on a read-only mount.
    """
    existing = Path(start if start is not None else path)
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot make {path}: {existing} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgerl-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return f"cannot write {path}: {existing} takes no new files ({err.strerror})"
    return None


def output_file(text: str) -> Path:
    """A file to (re)write: its folder must exist and take files (checked before any work)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name inside it")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder {path.parent} does not exist (or is not a folder): create it first")
    reason = unwritable(path, start=path.parent)  # the file itself may be there already: it is replaced
    if reason:
        raise argparse.ArgumentTypeError(reason)
    return path


def output_folder(text: str) -> Path:
    """A folder to write into, made if missing: it, or the folder it would be made in, must take files."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder")
    reason = unwritable(path)
    if reason:
        raise argparse.ArgumentTypeError(reason)
    return path
