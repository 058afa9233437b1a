"""A rollout in waves that stops on failure: `deploy --waves 1,10%,100% --max-fail N|P%`.

Waves follow Ansible's `serial`: each entry is a wave's size (N boards, or
P% of the fleet, at least 1), the last entry repeats until every board had
its turn, boards are taken in the inventory's order. A wave ends when every
board of it has finished its deploy and its gates (self-test; with
`--service` the board's health gate; on the first wave the canary's games,
judged by the caller). When the failures so far exceed `--max-fail` the
rollout stops: no further board is touched, and the boards of the failed
wave that switched go back to the release they ran before. `--max-fail P%`
is a share of the boards the rollout has touched so far (AWS IoT Jobs'
threshold over executed things): a canary wave of one board fails any
percentage below 100.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from deploy.fleet.inventory import Board
from deploy.fleet.parallel import deploy_fleet
from deploy.link.ssh import SshOptions
from deploy.link.targets import DeployError
from deploy.release import DeployConfig, DeployResult, rollback
from deploy.remote_run import open_target

Canary = Callable[[Board, DeployResult], str | None]
"""Judges a first-wave board after its deploy: why it fails (its games scored too low...), or None."""


@dataclass(frozen=True)
class WaveConfig:
    """How a rollout is cut into waves and when it stops."""

    waves: tuple[str, ...] = ("100%",)
    max_fail: str = "0"
    """Failed boards the rollout tolerates: N, or P% of the boards touched so far."""
    rollback_wave: bool = True
    """Put the boards of the wave that stopped the rollout back on the release they ran before."""
    pause_s: float = 0.0
    """Seconds between waves (a moment to look, or to press Ctrl-C)."""


def parse_size(text: str, what: str) -> str:
    """`N` (N >= 0 for --max-fail, >= 1 for a wave) or `P%` (0 < P <= 100), else a one-line error."""
    word = text.strip()
    number = word[:-1] if word.endswith("%") else word
    try:
        value = float(number) if word.endswith("%") else int(number)
    except ValueError:
        value = -1
    low = 0 if what == "--max-fail" else 1
    if word.endswith("%") and not (0 < value <= 100) or not word.endswith("%") and value < low:
        raise DeployError(f"{what} {text!r}: give a number of boards (>= {low}) or a percentage like 25%")
    return word


def parse_waves(text: str) -> tuple[str, ...]:
    """`1,10%,100%` -> ("1", "10%", "100%")."""
    return tuple(parse_size(part, "--waves") for part in text.split(","))


def _count(size: str, total: int, least: int) -> int:
    if size.endswith("%"):
        return max(least, int(float(size[:-1]) / 100.0 * total))
    return int(size)


def wave_sizes(waves: tuple[str, ...], total: int) -> list[int]:
    """How many boards each wave takes, the last entry repeated until none are left (Ansible's `serial`)."""
    sizes, left, i = [], total, 0
    while left > 0:
        size = min(left, _count(waves[min(i, len(waves) - 1)], total, 1))
        sizes.append(size)
        left -= size
        i += 1
    return sizes


def allowed_failures(max_fail: str, touched: int) -> int:
    """Failures tolerated once `touched` boards have been deployed to."""
    return int(float(max_fail[:-1]) / 100.0 * touched) if max_fail.endswith("%") else int(max_fail)


@dataclass
class Outcome:
    """What the rollout did to one board."""

    board: str
    state: str = "not touched"
    """ok, failed, rolled back, or not touched."""
    before: str | None = None
    after: str | None = None
    why: str = ""
    wave: int | None = None
    result: DeployResult | None = None
    error: DeployError | None = None


@dataclass
class Rollout:
    """Every board's outcome, in inventory order, and why the rollout stopped (None: it went through)."""

    outcomes: list[Outcome]
    stopped: str | None = None
    interrupted: bool = False
    waves: list[dict[str, Any]] = field(default_factory=list)


def _record(outcome: Outcome, result: DeployResult | DeployError, wave: int) -> None:
    outcome.wave = wave
    if isinstance(result, DeployError):
        outcome.state, outcome.why, outcome.error = "failed", str(result), result
        outcome.before = outcome.after = result.before
        gate = getattr(result, "gate", None)
        if gate and gate.get("verdict") == "rolled_back":
            outcome.after = gate.get("back_to")
        return
    outcome.state, outcome.result = "ok", result
    outcome.before, outcome.after = result.before, result.release


def _undo(boards: list[Board], outcomes: dict[str, Outcome], opts: SshOptions, say: Callable[[str], None]) -> None:
    """Roll the switched boards of a failed wave back to what they ran before, in parallel."""

    def one(board: Board) -> None:
        outcome = outcomes[board.name]
        try:
            with open_target(board.target, board.options(opts)) as target:
                outcome.after = rollback(target, say=say)
            if outcome.state == "ok":
                outcome.state, outcome.why = "rolled back", "its wave stopped the rollout; back on its old release"
        except DeployError as err:
            outcome.why = (outcome.why + "; " if outcome.why else "") + f"rolling back failed: {err}"

    switched = [b for b in boards if outcomes[b.name].result is not None
                and outcomes[b.name].before not in (None, outcomes[b.name].after)]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(switched)))) as pool:
        list(pool.map(one, switched))


def _pause(seconds: float, cancel: threading.Event) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not cancel.is_set():
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


@contextmanager
def _ctrl_c_cancels(cancel: threading.Event, say: Callable[[str], None]) -> Iterator[None]:
    """Ctrl-C sets `cancel` wherever the rollout is (a wave, its canaries, a pause), never a half-done step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum: int, frame: object) -> None:
        cancel.set()  # nothing else: the handler may run inside a print, under its lock

    old = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def roll_out(boards: list[Board], cfg: DeployConfig, waves: WaveConfig, opts: SshOptions,
             say: Callable[[str], None], canary: Canary | None = None,
             progress_for: Callable[[str], Any] = lambda _: None,
             cancel: threading.Event | None = None) -> Rollout:
    """Deploy wave after wave; stop when the failures exceed `max_fail`, or on Ctrl-C."""
    cancel = cancel or threading.Event()
    with _ctrl_c_cancels(cancel, say):
        return _waves(boards, cfg, waves, opts, say, canary, progress_for, cancel)


def _waves(boards: list[Board], cfg: DeployConfig, waves: WaveConfig, opts: SshOptions,
           say: Callable[[str], None], canary: Canary | None, progress_for: Callable[[str], Any],
           cancel: threading.Event) -> Rollout:
    outcomes = {b.name: Outcome(b.name) for b in boards}
    rollout = Rollout([outcomes[b.name] for b in boards])
    sizes = wave_sizes(waves.waves, len(boards))
    start, failures = 0, 0
    for number, size in enumerate(sizes, 1):
        if cancel.is_set():
            rollout.interrupted = True
            rollout.stopped = f"interrupted before wave {number}; its boards and later ones were not touched"
            break
        wave, start = boards[start:start + size], start + size
        began = time.monotonic()
        say(f"wave {number}/{len(sizes)}: {len(wave)} board{'s' * (len(wave) != 1)} "
            f"({', '.join(b.name for b in wave[:4])}{', ...' if len(wave) > 4 else ''})")
        for name, result in deploy_fleet(wave, cfg, opts, say, progress_for=progress_for, cancel=cancel):
            _record(outcomes[name], result, number)
        if cancel.is_set():
            say("interrupted: the boards of this wave stopped before their switch (those already switching "
                "finished); no further wave starts")
        refused = number == 1 and canary is not None and not cancel.is_set() and \
            _judge_canaries(wave, outcomes, canary, say)
        # Read once, before the summary: a Ctrl-C after it is printed is "before the next wave", not "during this".
        cancelled = cancel.is_set()
        failed = sum(outcomes[b.name].state == "failed" for b in wave)
        failures += failed
        limit = allowed_failures(waves.max_fail, start)
        seconds = time.monotonic() - began
        rollout.waves.append({"wave": number, "boards": len(wave), "failed": failed, "seconds": round(seconds, 1)})
        say(f"wave {number}/{len(sizes)}: {len(wave) - failed} ok, {failed} failed in {seconds:.1f} s "
            f"({failures} failed so far, --max-fail {waves.max_fail} allows {limit})")
        if cancelled:
            rollout.interrupted = True
            rollout.stopped = f"interrupted during wave {number}; later boards were not touched"
            break
        if refused or failures > limit:
            rollout.stopped = (f"stopped after wave {number}: " + (
                "the canary refused the release" if refused else
                f"{failures} board{'s' * (failures != 1)} failed, more than --max-fail {waves.max_fail} allows "
                f"({limit})") + "; later boards were not touched")
            if waves.rollback_wave:
                _undo(wave, outcomes, opts, say)
            break
        if number < len(sizes) and waves.pause_s:
            _pause(waves.pause_s, cancel)
    return rollout


def _judge_canaries(wave: list[Board], outcomes: dict[str, Outcome], canary: Canary,
                    say: Callable[[str], None]) -> bool:
    """Judge the first wave's boards that deployed with `canary`; whether any refused (that stops the rollout)."""

    def one(board: Board) -> None:
        outcome = outcomes[board.name]
        try:
            why = canary(board, outcome.result)
        except DeployError as err:
            why = str(err)
        if why:
            outcome.state, outcome.why = "failed", f"canary: {why}"
            say(f"{board.name}: canary refused: {why}")

    ready = [b for b in wave if outcomes[b.name].state == "ok"]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(ready)))) as pool:
        list(pool.map(one, ready))
    return any(outcomes[b.name].why.startswith("canary:") for b in ready)
