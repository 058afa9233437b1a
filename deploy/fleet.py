"""Deploy one bundle to many boards at once: one board failing (or hanging) does not stop the others."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from deploy.release import DeployConfig, DeployResult, deploy
from deploy.remote_run import open_target
from deploy.ssh import SshOptions
from deploy.targets import DeployError


def deploy_fleet(targets: list[str], cfg: DeployConfig, opts: SshOptions, say: Callable[[str], None],
                 progress_for: Callable[[str], Any] = lambda _: None, workers: int = 8
                 ) -> list[tuple[str, DeployResult | DeployError]]:
    """Deploy to every target in parallel; each result is the board's DeployResult or its DeployError."""

    def one(text: str) -> tuple[str, DeployResult | DeployError]:
        try:
            with open_target(text, opts) as target:
                return text, deploy(target, cfg, say=say, progress=progress_for(text))
        except DeployError as err:
            return text, err
        except Exception as err:  # one board's surprise must not hide the others' results
            return text, DeployError(f"{type(err).__name__}: {err}")

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(targets)))) as pool:
        return list(pool.map(one, targets))
