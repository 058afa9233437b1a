"""`python -m device serve`: the policy at a fixed rate, episode after episode, for as long as it runs.

The plant is the bundle's ALE game at the game's own real-time rate (60
frames/s over the frame skip: 15 decisions/s for Pong v5), or the user's own
I/O class (`--io FILE.py:CLASS`): built with no arguments, `observe()`
returns an array or a dict of arrays, `apply(action)` acts (returning True
starts a new episode: the policy's states are reset), `close()`, if there is
one, is called on every way out so the machine can be put in a safe state,
and `status()`, if there is one, adds a dict to the status file;
`outcome()`, if there is one, returns the last apply's `(reward, terminated)`
for a recording (`--record DIR`, device/record.py; a release's service.json
may name one under its board's data/). Timing
goes to the status file once a second and at exit; under systemd the loop
sends READY=1 after its first decision and WATCHDOG=1 while it runs.

Given a release folder (`<board>/current`) instead of a bundle, it serves the
release's bundle with the settings the deploy wrote in its `service.json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device import layout
from device.game_plant import GamePlant
from device.manifest import EXIT_LOOP_FAILED, MANIFEST, BundleError, EdgerlError, Manifest
from device.model_choice import model_for, read_choice
from device.play import game_run
from device.policy import Policy
from device.rate import LoopTiming, Ticker
from device.record import RecordConfig, Recorder
from device.sd_notify import Notifier
from device.trust import load_trusted
from device.user_code import load_named

REAL_TIME_FPS = 60.0
"""The Atari 2600's frame rate: a game bundle is served in the game's own time."""


@dataclass(frozen=True)
class ServeConfig:
    """What `python -m device serve` runs."""

    bundle: Path
    """A bundle folder, or a release folder holding bundle/ and service.json."""
    io: str | None = None
    """FILE.py:CLASS of the user's plant; None plays the bundle's game."""
    hz: float | None = None
    """Decisions per second; default the game's real-time rate (required with --io)."""
    seconds: float | None = None
    """Stop (exit 0) after this long; None runs until stopped."""
    status: Path | None = None
    seed: int = 0
    threads: int | None = None
    stall_s: float | None = None
    """A decision taking longer than this stops the loop (default max(1 s, 10 periods))."""
    clip: bool = False
    """Clip continuous actions into the manifest's bounds instead of stopping the loop on one outside them."""
    record: Path | None = None
    """Record every decision into this folder (device/record.py)."""
    record_max_mb: float | None = None
    int8: str = "auto"
    """auto (the board's self-test's choice), on, off: device/model_choice.py."""


class LoopFailed(EdgerlError):
    """The loop stopped on a fault in the plant or the policy; close() has run."""

    exit_code = EXIT_LOOP_FAILED


class _Stalled(BaseException):
    """Raised by the stall alarm inside a blocked phase (BaseException: user code's `except Exception` passes it)."""


class _Stop(BaseException):
    """SIGTERM/SIGINT/SIGHUP: leave the loop at once, through close()."""


def resolve(cfg: ServeConfig) -> tuple[Path, ServeConfig]:
    """The bundle folder, and the config with a release's service.json applied (flags win)."""
    path = Path(cfg.bundle).resolve()  # once: a `current` flipped meanwhile cannot mix two releases
    if (path / MANIFEST).is_file() or not (path / layout.BUNDLE_DIR / MANIFEST).is_file():
        return path, cfg
    settings: dict[str, Any] = {}
    if (path / layout.SERVICE_FILE).is_file():
        try:
            settings = json.loads((path / layout.SERVICE_FILE).read_text())
        except (OSError, ValueError) as err:
            raise BundleError(f"cannot read {path / layout.SERVICE_FILE}: {err}; redeploy the release") from None
    io = cfg.io or (str(path / settings["io"]) if settings.get("io") else None)
    hz = cfg.hz or settings.get("hz")
    # A release records into its board's data/NAME: <board>/releases/<id> -> <board>/data/NAME.
    record = cfg.record or (path.parent.parent / layout.DATA / settings["record"] if settings.get("record") else None)
    record_max_mb = cfg.record_max_mb or settings.get("record_max_mb")
    return path / layout.BUNDLE_DIR, ServeConfig(path, io, hz, cfg.seconds, cfg.status, cfg.seed, cfg.threads,
                                                 cfg.stall_s, cfg.clip, record, record_max_mb)


def load_io(spec: str) -> Any:
    """Build the user's plant from FILE.py:CLASS; one line for each way it can be wrong."""
    path, name, cls = load_named(spec, "--io", "CLASS", BundleError)
    if cls is None:
        raise BundleError(f"--io: {path} has no class {name!r}")
    try:
        plant = cls()
    except Exception as err:
        raise BundleError(f"--io: {name}() raised {type(err).__name__}: {err}") from None
    for method in ("observe", "apply"):
        if not callable(getattr(plant, method, None)):
            raise BundleError(f"--io: {name} has no {method}() method")
    return plant


def release_name(path: Path) -> str:
    """The release id when serving a deployed release (or its bundle), else the bundle's path."""
    for folder in (path, path.parent):
        if folder.parent.name == layout.RELEASES:
            return folder.name
    return str(path)


class StatusFile:
    """The loop's figures as JSON, replaced atomically (a reader never sees half a file).

    Written through one temporary name, and what a power cut left under it (or under the per-process names
    of older releases) is removed when a loop starts: nothing piles up beside the file. Not fsynced: it is a
    live signal rewritten every second, and an fsync per second on an SD card would cost the control loop
    its period for a file whose last second a cut may lose anyway.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path else None
        if self.path is not None:
            prefix = f".{self.path.name}."
            with contextlib.suppress(OSError):  # a folder it cannot list: writing will say so, or be ignored
                for stale in self.path.parent.iterdir():
                    if stale.name.startswith(prefix):
                        stale.unlink(missing_ok=True)

    def write(self, status: dict[str, Any]) -> None:
        """Replace the file (a write error is ignored)."""
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            tmp.write_text(json.dumps(status, indent=1) + "\n")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk must not stop the machine's control loop


def _arm(seconds: float) -> None:
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _on_signal(signum: int, frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def _on_alarm(signum: int, frame: object) -> None:
    raise _Stalled()


class Loop:
    """One serve run: plant, policy, clock, figures, systemd."""

    ticker = Ticker
    """The clock's class (bench/serve_rate.py swaps in a naive `sleep(period)` one to compare)."""

    def __init__(self, cfg: ServeConfig, started: float) -> None:
        self.started = started
        bundle, cfg = resolve(cfg)
        self.cfg = cfg
        manifest = load_trusted(bundle)
        self.manifest = manifest
        if cfg.io is None and manifest.env is None:
            raise BundleError("this bundle has no game to play (its policy reads your own sensors); "
                              "pass --io FILE.py:CLASS with your plant's observe() and apply()")
        hz = cfg.hz or (REAL_TIME_FPS / manifest.env.frame_skip if manifest.env else None)
        if not hz or hz <= 0:
            raise BundleError("pass --hz N: how many decisions per second your plant wants")
        self.hz = float(hz)
        self.stall_s = cfg.stall_s or max(1.0, 10.0 / self.hz)
        self.release = release_name(bundle)
        if manifest.env is not None:
            import onnxruntime  # deferred: only a game run seeds sampling, as `play` does

            onnxruntime.set_seed(int(cfg.seed))
        self.policy = Policy(bundle, manifest, cfg.threads, model_for(bundle, manifest, cfg.int8), clip=cfg.clip)
        chosen = read_choice(bundle, manifest)
        self.choice = chosen.reason if chosen is not None else None
        self.plant = load_io(cfg.io) if cfg.io else GamePlant(manifest, cfg.seed)
        self.recorder = self._recorder(cfg, manifest)
        self.decision: dict[str, Any] = {}
        self.timing = LoopTiming(self.hz)
        self.status = StatusFile(cfg.status)
        self.notifier = Notifier()
        self.first_action_s: float | None = None
        self.state, self.error = "starting", None
        self.phase = "observe"
        """The phase running now: a fault names it."""
        self.clock: Ticker | None = None
        self.worst_report_s = 0.0

    def _recorder(self, cfg: ServeConfig, manifest: Manifest) -> Recorder | None:
        if cfg.record is None:
            return None
        if isinstance(self.plant, GamePlant):
            self.plant.recording = True
            run = game_run(manifest, cfg.seed, "serve", self.policy.model_file)
        else:
            run = {"kind": "io", "mode": "serve", "bundle_id": manifest.bundle_id, "io": cfg.io, "hz": self.hz,
                   "model_file": self.policy.model_file,
                   "outcome": callable(getattr(self.plant, "outcome", None))}
        try:
            return Recorder(RecordConfig(cfg.record, cfg.record_max_mb), {**run, "release": self.release})
        except (OSError, ValueError) as err:
            raise BundleError(f"cannot record into {cfg.record}: {err}; give another --record folder") from None

    def figures(self) -> dict[str, Any]:
        """The status file's contents."""
        out: dict[str, Any] = {"state": self.state, "release": self.release, "bundle_id": self.manifest.bundle_id,
                               "pid": os.getpid(), "io": self.cfg.io, "updated_at": time.time(),
                               "uptime_s": round(time.monotonic() - self.started, 3),
                               "cold_start_s": self.first_action_s, "error": self.error,
                               "model_file": self.policy.model_file, "model_choice": self.choice}
        out.update(self.timing.figures())
        out["skipped_periods"] = self.clock.skipped if self.clock is not None else 0
        out["late_wakes"] = getattr(self.clock, "late_wakes", 0)
        out["worst_wake_late_ms"] = round(getattr(self.clock, "worst_wake_late_s", 0.0) * 1000.0, 3)
        out["late_iterations"] = getattr(self.clock, "late_entries", 0)
        out["worst_report_ms"] = round(self.worst_report_s * 1000.0, 3)
        if self.recorder is not None:
            out["recording"] = self.recorder.figures()
        if isinstance(self.plant, GamePlant):
            out["episodes"] = self.plant.episodes
            out["scores"] = self.plant.scores
        elif callable(getattr(self.plant, "status", None)):
            try:
                out["io_status"] = self.plant.status()
            except Exception as err:  # the figures are optional; the loop is not
                out["io_status"] = {"error": f"{type(err).__name__}: {err}"}
        return out

    def _decide(self, clock: Callable[[], float]) -> tuple[float, float, float, bool]:
        self.phase = "observe"
        t0 = clock()
        obs = self.plant.observe()
        self.phase = "infer"
        t1 = clock()
        action = self.policy.act(obs)
        self.phase = "apply"
        t2 = clock()
        new_episode = self.plant.apply(action)
        if self.recorder is not None:
            self.phase = "outcome"
            self.decision = self._decision(obs, action, bool(new_episode))
        return t1 - t0, t2 - t1, clock() - t2, bool(new_episode)

    def _decision(self, obs: Any, action: Any, new_episode: bool) -> dict[str, Any]:
        """One decision as the recording keeps it (a game's: its step and screen CRC; a plant's: what it saw)."""
        if isinstance(self.plant, GamePlant):
            return self.plant.last  # made fresh by each apply()
        seen = obs if isinstance(obs, dict) else {"observation": obs}
        outcome = self.plant.outcome() if callable(getattr(self.plant, "outcome", None)) else None
        reward, terminated = (float("nan"), False) if outcome is None else (float(outcome[0]), bool(outcome[1]))
        return {**{f"obs.{k}": np.array(v, copy=True) for k, v in seen.items()}, "action": np.array(action, copy=True),
                "reward": np.float32(reward), "terminated": terminated,
                "truncated": new_episode and not terminated}

    def run(self) -> dict[str, Any]:
        """Decide once per period until stopped; the status at the end."""
        # The first report's costs are paid before the clock starts: numpy imports numpy.ma on the first
        # percentile, 0.3 s where it compiles from source (a fresh venv), which skipped 5-14 periods of the loop.
        json.dumps(self.figures())
        clock = time.monotonic
        self.clock = self.ticker(self.hz, clock)
        deadline = None if self.cfg.seconds is None else clock() + self.cfg.seconds
        next_report = 0.0
        while deadline is None or clock() < deadline:
            started = clock()
            _arm(self.stall_s)
            observe_s, infer_s, apply_s, new_episode = self._decide(clock)
            _arm(0)
            if new_episode:
                self.policy.reset()
            self.timing.record(started, observe_s, infer_s, apply_s)
            if self.recorder is not None:
                self.recorder.add(self.decision)
            if self.first_action_s is None:
                self.first_action_s = round(clock() - self.started, 4)
                self.state = "running"
                self.notifier.send("READY=1", f"STATUS=serving {self.release} at {self.hz:g} Hz")
            if started >= next_report:
                self._report()
                next_report = started + min(1.0, self.notifier.ping_every_s)
            self.clock.wait()
        self.state = "stopped"
        return self.figures()

    def _report(self) -> None:
        started = time.monotonic()
        figures = self.figures()
        self.status.write(figures)
        # A status write can block (a disk busy writing back): timed, so a skipped period can be traced to it.
        self.worst_report_s = max(self.worst_report_s, time.monotonic() - started)
        self.notifier.send("WATCHDOG=1", f"STATUS={figures['achieved_hz']:.2f} Hz, {figures['overruns']} overruns, "
                                         f"{self.release}")

    def close(self) -> None:
        """Let the plant make the machine safe, then write the last status; never raises."""
        _arm(0)
        close = getattr(self.plant, "close", None)
        if callable(close):
            try:
                close()
            except Exception as err:
                self.error = (self.error or "") + f"; close() raised {type(err).__name__}: {err}"
        self.notifier.send("STOPPING=1")
        if self.recorder is not None:
            self.recorder.close()
        self.status.write(self.figures())
        self.notifier.close()


def _fault(loop: Loop, err: BaseException) -> LoopFailed:
    where = loop.phase
    if isinstance(err, _Stalled):
        return LoopFailed(f"{where}() blocked for more than {loop.stall_s:g} s; the loop stopped after close()")
    if where == "infer":
        return LoopFailed(f"the policy failed: {err}; the loop stopped after close()")
    owner = "your I/O class's" if loop.cfg.io else "the game's"
    return LoopFailed(f"{owner} {where}() raised {type(err).__name__}: {err}; the loop stopped after close()")


def serve(cfg: ServeConfig, started: float | None = None) -> dict[str, Any]:
    """Run the loop until `cfg.seconds` or a signal; raise LoopFailed (after close()) on a fault."""
    started = time.monotonic() if started is None else started
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    old[signal.SIGALRM] = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        try:
            loop = Loop(cfg, started)
        except EdgerlError as err:  # the status file says why, so a supervisor's health check can tell
            StatusFile(cfg.status).write({"state": "failed", "release": release_name(Path(cfg.bundle).resolve()),
                                          "error": str(err), "updated_at": time.time(), "decisions": 0})
            raise
        try:
            loop.run()
        except _Stop as stop:
            loop.state = f"stopped by {stop}"
        except (Exception, _Stalled) as err:
            failed = _fault(loop, err)
            loop.state, loop.error = "failed", str(failed)
            raise failed from None
        finally:
            loop.close()
        return loop.figures()  # after close(): the recording's last shard and close()'s own errors counted
    except _Stop as stop:  # a signal while setting up: nothing ran, nothing to close
        return {"state": f"stopped by {stop}", "decisions": 0}
    finally:
        _arm(0)
        for sig, handler in old.items():
            signal.signal(sig, handler)
