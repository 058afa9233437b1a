"""What every board command shares: SSH options from the flags, printing, progress."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
from collections.abc import Callable

from deploy.link.ssh import SshOptions

_print_lock = threading.Lock()


def say(line: str) -> None:
    """Print one line; lines of boards deploying in parallel never interleave.

    A reader that went away (`edgerl deploy ... | head -1`) stops the printing, never the work: a deploy half-way
    through a board's steps finishes them, and what it no longer prints goes nowhere.
    """
    with _print_lock:
        try:
            print(line, flush=True)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def ssh_options(args: argparse.Namespace) -> SshOptions:
    """SSH options from the shared flags."""
    return SshOptions(known_hosts=args.known_hosts, ssh_config=args.ssh_config, accept_new=args.accept_new,
                      identity=args.identity, board_dir=args.board_dir, silence_timeout=args.silence_timeout,
                      connect_timeout=min(15.0, args.silence_timeout))


def progress_bar(name: str) -> Callable[[str, int, int], None] | None:
    """An upload progress bar for one board on a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}
    size = shutil.get_terminal_size()  # a pty nobody sized says 0 x 0, where tqdm would draw nothing

    def update(file: str, n: int, total: int) -> None:
        bar = bars.get("all") or bars.setdefault("all", tqdm(total=total, unit="B", unit_scale=True, desc=name,
                                                             leave=False, ncols=size.columns, nrows=size.lines))
        bar.update(n)

    return update
