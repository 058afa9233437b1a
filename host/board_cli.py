"""`edgerl service`, and what every board command shares: SSH options from the flags, printing, progress."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable

from deploy import service
from deploy.remote_run import open_target
from deploy.ssh import SshOptions
from device.manifest import EXIT_OK

_print_lock = threading.Lock()


def say(line: str) -> None:
    """Print one line; lines of boards deploying in parallel never interleave."""
    with _print_lock:
        print(line, flush=True)


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

    def update(file: str, n: int, total: int) -> None:
        bar = bars.get("all") or bars.setdefault("all", tqdm(total=total, unit="B", unit_scale=True, desc=name,
                                                             leave=False))
        bar.update(n)

    return update


def service_cmd(args: argparse.Namespace) -> int:
    """`edgerl service ACTION --on TARGET`."""
    with open_target(args.on, ssh_options(args)) as target:
        if args.action == "status":
            answer = service.status(target)
            print(json.dumps(answer, indent=2) if args.json else "\n".join(service.status_lines(args.on, answer)))
        elif args.action == "logs":
            print("\n".join(service.logs(target, args.lines)))
        else:
            unit = service.control(target, args.action)
            print(f"{args.on}: {unit.get('ActiveState')} ({unit.get('SubState')})")
    return EXIT_OK
