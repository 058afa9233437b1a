"""Many boards at once (a deploy, a pull): one board failing (or hanging) does not stop the others."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

from deploy.fleet.inventory import Board
from deploy.link.ssh import SshOptions
from deploy.link.targets import DeployError
from deploy.release import Cancelled, DeployConfig, DeployResult, deploy
from deploy.remote_run import open_target

T = TypeVar("T")


def at_once(boards: list[Board], act: Callable[[Board], T], workers: int = 8,
            on_interrupt: Callable[[], None] | None = None) -> list[tuple[str, T | DeployError]]:
    """`act(board)` on every board in parallel: (board name, its result or the DeployError that ended it).

    Every board step is bounded by the silence timeout, so a dead board fails alone and does not hold up the
    others. Ctrl-C calls `on_interrupt` (which asks each act to stop at its next step) and waits for them; without
    one it is raised at once.
    """

    def one(board: Board) -> tuple[str, T | DeployError]:
        try:
            return board.name, act(board)
        except DeployError as err:
            return board.name, err
        except Exception as err:  # one board's surprise must not hide the others' results
            return board.name, DeployError(f"{type(err).__name__}: {err}")

    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(boards))))
    futures = [pool.submit(one, board) for board in boards]
    try:
        while not all(f.done() for f in futures):
            wait(futures, timeout=0.5)  # a short wait keeps Ctrl-C deliverable to this thread
    except KeyboardInterrupt:
        if on_interrupt is None:
            raise
        on_interrupt()
        wait(futures)
    finally:
        pool.shutdown(wait=False)
    return [f.result() for f in futures]


def deploy_fleet(boards: list[Board], cfg: DeployConfig, opts: SshOptions, say: Callable[[str], None],
                 progress_for: Callable[[str], Any] = lambda _: None, workers: int = 8,
                 cancel: threading.Event | None = None) -> list[tuple[str, DeployResult | DeployError]]:
    """Deploy to every board in parallel; each result is (board name, its DeployResult or its DeployError).

    Setting `cancel` (Ctrl-C does) stops each board at its next step before its switch.
    """

    def one(board: Board) -> DeployResult:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"{board.name}: interrupted before connecting; nothing changed there")
        with open_target(board.target, board.options(opts), create=True) as target:
            return deploy(target, cfg, say=say, progress=progress_for(board.name), cancel=cancel)

    def stop_all() -> None:
        cancel.set()
        say("interrupted: stopping every board before its switch (boards already switching finish)")

    return at_once(boards, one, workers, stop_all if cancel is not None else None)
