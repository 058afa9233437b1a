"""`edgerl data pull` across a fleet: every board at once, each bounded by the silence timeout, each alone."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from deploy.fleet.inventory import Board
from deploy.link.ssh import SshOptions
from deploy.link.targets import DeployError
from deploy.pull import PullConfig, PullResult, pull
from deploy.remote_run import open_target


def pull_fleet(boards: list[Board], cfg: PullConfig, opts: SshOptions, say: Callable[[str], None],
               workers: int = 8) -> list[tuple[str, PullResult | DeployError]]:
    """Pull from every board in parallel: (board name, its PullResult or the DeployError that stopped it)."""

    def one(board: Board) -> tuple[str, PullResult | DeployError]:
        try:
            with open_target(board.target, board.options(opts)) as target:
                return board.name, pull(target, board.name, cfg, say)
        except DeployError as err:
            return board.name, err
        except Exception as err:  # one board's surprise must not hide the others' results
            return board.name, DeployError(f"{type(err).__name__}: {err}")

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(boards)))) as pool:
        return list(pool.map(one, boards))
