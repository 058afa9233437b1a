"""`edgerl data pull` across a fleet: every board at once, each bounded by the silence timeout, each alone."""

from __future__ import annotations

from collections.abc import Callable

from deploy.fleet.inventory import Board
from deploy.fleet.parallel import at_once
from deploy.link.ssh import SshOptions
from deploy.link.targets import DeployError
from deploy.pull import PullConfig, PullResult, pull
from deploy.remote_run import open_target


def pull_fleet(boards: list[Board], cfg: PullConfig, opts: SshOptions, say: Callable[[str], None],
               workers: int = 8) -> list[tuple[str, PullResult | DeployError]]:
    """Pull from every board in parallel: (board name, its PullResult or the DeployError that stopped it)."""

    def one(board: Board) -> PullResult:
        with open_target(board.target, board.options(opts)) as target:
            return pull(target, board.name, cfg, say)

    return at_once(boards, one, workers)
