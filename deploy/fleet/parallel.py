"""Deploy one bundle to many boards at once: one board failing (or hanging) does not stop the others."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from deploy.fleet.inventory import Board
from deploy.link.ssh import SshOptions
from deploy.link.targets import DeployError
from deploy.release import Cancelled, DeployConfig, DeployResult, deploy
from deploy.remote_run import open_target


def deploy_fleet(boards: list[Board], cfg: DeployConfig, opts: SshOptions, say: Callable[[str], None],
                 progress_for: Callable[[str], Any] = lambda _: None, workers: int = 8,
                 cancel: threading.Event | None = None) -> list[tuple[str, DeployResult | DeployError]]:
    """Deploy to every board in parallel; each result is (board name, its DeployResult or its DeployError).

    Every board step is bounded by the silence timeout, so a dead board
    fails alone and does not hold up the others. Setting `cancel` stops
    each board at its next step before its switch.
    """

    def one(board: Board) -> tuple[str, DeployResult | DeployError]:
        try:
            if cancel is not None and cancel.is_set():
                return board.name, Cancelled(f"{board.name}: interrupted before connecting; nothing changed there")
            with open_target(board.target, board.options(opts), create=True) as target:
                return board.name, deploy(target, cfg, say=say, progress=progress_for(board.name), cancel=cancel)
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
        if cancel is None:
            raise
        cancel.set()
        say("interrupted: stopping every board before its switch (boards already switching finish)")
        wait(futures)
    finally:
        pool.shutdown(wait=False)
    return [f.result() for f in futures]
