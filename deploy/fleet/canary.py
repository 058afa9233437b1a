"""The canary's score gate: games played on a board just deployed, their mean judged against an evaluated one.

One implementation for `edgerl deploy --waves ... --canary-games N` (the first wave's boards) and the Ansible module
`edgerl.board.canary`. The games run on the board's own loop (`edgerl run`'s code); their report is replayed on the
host's env (torch: deferred, and the one arrow from deploy/ into host/), so a board cannot claim a score it did not
play.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.link.targets import DeployError, Target
from deploy.remote_run import RunConfig, run_on
from device.manifest import load_bundle


@dataclass(frozen=True)
class CanaryConfig:
    """How a canary is judged."""

    bundle: Path
    games: int
    seed: int = 0
    reports: Path = Path("reports")
    score_margin: float = 2.0
    """How far below the evaluated mean the canary's mean may fall."""
    against: Path | None = None
    """Judge by this bundle's evaluated mean instead of the bundle's own (a distilled student by its teacher)."""


@dataclass(frozen=True)
class Bar:
    """The evaluated mean a canary is held to, and the floor under it."""

    mean: float
    floor: float
    whose: str


def bar(cfg: CanaryConfig) -> Bar:
    """The bar from the manifests, or one line saying why there is none (before any board is touched)."""
    manifest = load_bundle(cfg.bundle)
    judged_by = cfg.against or cfg.bundle
    baseline = load_bundle(judged_by) if cfg.against else manifest
    evaluation = baseline.provenance.get("evaluation") or {}
    if manifest.env is None or "mean" not in evaluation:
        raise DeployError("--canary-games needs a game bundle and an evaluation in the manifest it is judged by: run "
                          f"`edgerl evaluate {judged_by}` first")
    if baseline.env != manifest.env:
        raise DeployError(f"--canary-against {judged_by} plays {baseline.env.game} under other settings than "
                          f"{cfg.bundle} ({manifest.env.game}): its score says nothing of this one's")
    mean = float(evaluation["mean"])
    return Bar(mean, mean - cfg.score_margin, "manifest" if not cfg.against else str(judged_by))


def preload() -> None:
    """Import the replay (torch) now, in the caller's thread: the canaries are judged in threads."""
    import host.bundle.replay  # noqa: F401 - deferred to here: only a rollout with canaries pays torch's import


def replayed(report: Path, bundle: Path, here: bool) -> str | None:
    """The host's replay of the canary's report: None when it agrees, else why not.

    `here=False` replays in a process of its own: under Ansible, whose import patches `sys.intern`, torch cannot be
    imported into the same process (deploy/fleet/ansible_hosts.py reads inventories apart for the same reason).
    """
    if not here:
        done = subprocess.run([sys.executable, "-m", "host.cli", "replay", str(report), str(bundle)],
                              capture_output=True, text=True, timeout=1800)
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()
        return None if done.returncode == 0 else (last[-1] if last else f"replay exited {done.returncode}")
    from host.bundle.replay import ReplayConfig, ReplayError, replay  # deferred: torch, once a canary has played

    try:
        replay(ReplayConfig(report, bundle), say=lambda _: None)
    except ReplayError as err:
        return str(err)
    return None


def judge(target: Target, cfg: CanaryConfig, held: Bar, say: Callable[[str], None], name: str | None = None,
          replay_here: bool = True) -> tuple[float, str | None]:
    """Play the canary games on the board and judge them: (their mean, why it is refused or None)."""
    name = name or target.name
    report, local = run_on(target, RunConfig(cfg.games, cfg.seed, reports=Path(cfg.reports)),
                           on_line=lambda line: say(f"[{name}] canary: {line}"))
    mean = report["mean_score"]
    say(f"{name}: canary mean {mean:+.1f} over {cfg.games} games ({held.whose} {held.mean:+.1f}, floor "
        f"{held.floor:+.1f})")
    if mean < held.floor:
        return mean, (f"its {cfg.games} games scored {mean:+.1f} on average, more than {cfg.score_margin:g} below "
                      f"{'the manifest' if not cfg.against else cfg.against}'s evaluated {held.mean:+.1f}")
    disagrees = replayed(local, cfg.bundle, replay_here)
    if disagrees:
        return mean, f"the host's replay of its games disagrees with the board's report: {disagrees}"
    return mean, None
