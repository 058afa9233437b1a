"""`edgerl run`: play on the board's current release, stream progress, bring the report back."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy import board_client
from deploy.link.ssh import SshOptions, SshTarget
from deploy.link.targets import DeployError, LocalTarget, Target, parse_target
from deploy.signing import Untrusted
from device import layout
from device.manifest import IntegrityError
from device.report import read_report


@dataclass(frozen=True)
class RunConfig:
    """What `edgerl run` plays."""

    episodes: int = 1
    seed: int = 0
    max_steps: int | None = None
    threads: int | None = None
    reports: Path = Path("reports")
    """Host folder the report is fetched into."""
    record: str | None = None
    """Record the games into the board's data/NAME, for `edgerl data pull`."""


class ReleaseBroken(DeployError, IntegrityError):
    """The board's current release fails its checksums: a failed check, and nothing was run."""

    exit_code = IntegrityError.exit_code


def open_target(text: str, opts: SshOptions, create: bool = False) -> Target:
    """`local:DIR` or `[user@]host[:port]` / ssh config alias -> a connected Target (local: created if asked)."""
    kind, user, host, port = parse_target(text)
    if kind == "local":
        return LocalTarget(Path(host), create=create)
    return SshTarget(user, host, port, opts)


def run_on(target: Target, cfg: RunConfig, on_line: Callable[[str], None] | None = None) -> tuple[dict[str, Any], Path]:
    """Play on the current release; returns the report and where it was saved on the host."""
    checked = board_client.expect(target, "check-current", target.root, what="checking the current release")
    current = checked["release"]
    if current is None:
        raise DeployError(f"{target.name} has no current release; deploy one first with `edgerl deploy`")
    if checked.get("untrusted"):
        raise Untrusted(f"{target.name}: the current release {Path(current).name} is refused by the board's trust "
                        f"policy: {checked['problems'][0]}")
    if checked["problems"]:
        raise ReleaseBroken(f"{target.name}: the current release {Path(current).name} fails its checksums "
                            f"({'; '.join(checked['problems'][:3])}); nothing was run. Redeploy it to repair it")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    remote = target.path(layout.REPORTS, f"{stamp}.json")
    target.check(["mkdir", "-p", target.path(layout.REPORTS)], "creating reports/")
    # `current` was resolved once above: a rollback meanwhile cannot mix two releases into one game.
    argv = [f"{current}/{layout.VENV_LINK}/bin/python", "-m", "device", "play", f"{current}/{layout.BUNDLE_DIR}",
            "--episodes", str(cfg.episodes),
            "--seed", str(cfg.seed), "--report", remote]
    if cfg.max_steps:
        argv += ["--max-steps", str(cfg.max_steps)]
    if cfg.threads:
        argv += ["--threads", str(cfg.threads)]
    if cfg.record:
        target.check(["mkdir", "-p", target.path(layout.DATA)], "creating data/")
        argv += ["--record", target.path(layout.DATA, cfg.record)]
    target.check(argv, "play", env={"PYTHONPATH": current}, on_line=on_line)
    report_release = Path(current).name
    cfg.reports.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in target.name)
    local = cfg.reports / f"{safe}-{stamp}.json"
    target.get(remote, local)
    report = read_report(local)
    report["release"] = report_release
    return report, local
