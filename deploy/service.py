"""The host's end of the board's service: `deploy --service` and `edgerl service status|start|stop|logs`.

What runs on the board is `deploy/board/service.py`; this side ships the
release's service settings (and the user's I/O class) with the bundle,
installs the units, switches, and then only watches: the board decides
whether the new release is committed or rolled back, so a link lost right
after the switch leaves the decision where it was.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy import board_client
from deploy.board.units import START_ALLOWANCE_S
from deploy.link.targets import DeployError, Target
from device import layout
from device.manifest import IntegrityError


@dataclass(frozen=True)
class ServiceConfig:
    """How `deploy --service` runs the release on the board."""

    io: str | None = None
    """FILE.py:CLASS on this host: the plant; it travels in the release, checksummed."""
    hz: float | None = None
    gate_seconds: float = 30.0
    """How long the new release must run healthy before it is committed."""
    max_overrun: float = 0.05
    """The share of periods that may miss their deadline during the gate."""
    poll_s: float = 2.0
    record: str | None = None
    """Record every decision into the board's data/<record> (device/record.py)."""
    record_max_mb: float | None = None

    def checked(self, io_flag: str = "--io", hz_flag: str = "--hz") -> ServiceConfig:
        """These settings, or one line naming what is missing (in the caller's own words for the two options)."""
        if self.io and not self.hz:
            raise DeployError(f"{io_flag} needs {hz_flag}: how many decisions per second your plant wants")
        return self


class GateFailed(DeployError, IntegrityError):
    """The new release failed its health gate on the board and the board went back to the old one."""

    exit_code = IntegrityError.exit_code
    gate: dict[str, Any] | None = None
    """The board's verdict, reason and figures."""


def release_extras(cfg: ServiceConfig) -> dict[str, Path]:
    """The files a service release carries besides the bundle: service.json and the I/O class's file."""
    extras, io = {}, None
    if cfg.io:
        file, sep, cls = cfg.io.rpartition(":")
        path = Path(file)
        if not sep or not cls or path.suffix != ".py" or not path.is_file():
            raise DeployError(f"--io wants an existing FILE.py:CLASS, not {cfg.io!r}")
        io = f"{layout.IO_DIR}/{path.name}:{cls}"
        extras[f"{layout.IO_DIR}/{path.name}"] = path
    recording = {"record": cfg.record, "record_max_mb": cfg.record_max_mb} if cfg.record else {}
    text = json.dumps({"hz": cfg.hz, "io": io, **recording}, sort_keys=True) + "\n"
    # Named by its content: every deploy of the same settings reads one file, none piles up.
    settings = Path(tempfile.gettempdir()) / f"edgerl-service-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not settings.is_file() or settings.read_text() != text:
        settings.write_text(text)
    extras[layout.SERVICE_FILE] = settings
    return extras


def foreground(target: Target, cfg: ServiceConfig) -> str:
    """The command that runs the loop in the foreground on a board deployed without --service."""
    argv = ["python", "-m", "device", "serve", "current"]
    plant = ""
    if cfg.io:
        path, _, cls = cfg.io.rpartition(":")
        argv += ["--io", f"{Path(path).name}:{cls}"]
        plant = f" (copy {Path(path).name} there first)"
    argv += ["--hz", f"{cfg.hz:g}"] if cfg.hz else []
    return (f"cd {shlex.quote(target.root)} && PYTHONPATH=current {layout.CURRENT}/{layout.VENV_LINK}/bin/"
            f"{shlex.join(argv)}{plant}")


def install(target: Target, cfg: ServiceConfig) -> None:
    """Units written and enabled on the board, before anything is uploaded: a board without systemd says so."""
    reply = board_client.call(target, "service-install", target.root, what="installing the service")
    if not reply["ok"]:
        fix = ""
        if reply.get("no_systemd"):
            fix = f"; deploy without --service, then run the loop in the foreground there: {foreground(target, cfg)}"
        raise DeployError(f"{target.name}: {reply['error']}{fix}")


def wait_pending_gate(target: Target, say: Callable[[str], None], timeout: float = START_ALLOWANCE_S + 120) -> None:
    """A gate still running on the board (an earlier deploy, a boot after a power cut) ends before a new one."""
    deadline = time.monotonic() + timeout
    while True:
        pending = board_client.expect(target, "gate-resume", target.root, what="reading the gate")["gate"]
        if pending is None:
            return
        if time.monotonic() > deadline:
            raise DeployError(f"{target.name}: the gate of {pending['release']} has not ended in {timeout:.0f} s; "
                              "see `edgerl service logs`")
        say(f"{target.name}: waiting for the gate of {pending['release']} to end")
        time.sleep(5)


def begin_gate(target: Target, release: str, cfg: ServiceConfig) -> None:
    """Record the gate on the board, durably, before the switch that it judges."""
    board_client.expect(target, "gate-begin", target.root, release, str(cfg.gate_seconds), str(cfg.max_overrun),
                        what="recording the gate")


def switch(target: Target) -> None:
    """Restart the loop on the new current and start the board's gate."""
    board_client.expect(target, "service-switch", target.root, what="restarting the service")


def await_verdict(target: Target, release: str, cfg: ServiceConfig, say: Callable[[str], None]) -> dict[str, Any]:
    """Watch the board's gate end; the board's own result (committed, rolled back) with its figures."""
    deadline = time.monotonic() + START_ALLOWANCE_S + cfg.gate_seconds + 60
    said = False
    try:
        while time.monotonic() < deadline:
            reply = board_client.expect(target, "gate-status", target.root, what="watching the gate")
            result = reply["result"]
            if reply["gate"] is None and result and result.get("release") == release:
                return result
            if not said:
                say(f"{target.name}: {release} is serving; the board commits it after {cfg.gate_seconds:g} s healthy")
                said = True
            time.sleep(cfg.poll_s)
    except DeployError as err:
        raise DeployError(f"{target.name}: lost the board after the switch to {release} ({err}); the board "
                          "finishes the health gate alone and commits or rolls back by itself: "
                          f"`edgerl service status --on {target.name}` says which") from err
    raise DeployError(f"{target.name}: the gate of {release} did not end in time; the board still judges it: "
                      f"`edgerl service status --on {target.name}`")


def figures_line(figures: dict[str, Any] | None) -> str:
    """The loop's figures in a few words."""
    if not figures:
        return "no figures"
    period = figures.get("period_ms") or {}
    return (f"{figures.get('achieved_hz', 0):.2f} Hz of {figures.get('target_hz', 0):g}, "
            f"{figures.get('decisions', 0)} decisions, {figures.get('overruns', 0)} overruns, "
            f"period p99 {period.get('p99', 0):.1f} ms")


def verdict_line(result: dict[str, Any]) -> str:
    """One line for the gate's end."""
    figures = figures_line(result.get("figures"))
    if result["verdict"] == "committed":
        return f"committed {result['release']}: {result['reason']} ({figures})"
    if result["verdict"] == "rolled_back":
        return (f"rolled back to {result['back_to']}: {result['release']} failed its gate: {result['reason']} "
                f"({figures})")
    return f"{result['verdict']}: {result['release']}: {result['reason']} ({figures})"


def judge(result: dict[str, Any]) -> None:
    """A gate that did not commit is a failed deploy (exit 1), its one line saying why."""
    if result["verdict"] != "committed":
        failed = GateFailed(verdict_line(result))
        failed.gate = result
        raise failed


def status(target: Target) -> dict[str, Any]:
    """What `edgerl service status` prints."""
    reply = board_client.expect(target, "service-status", target.root, what="reading the service")
    reply.pop("ok")
    return reply


def control(target: Target, action: str) -> dict[str, str]:
    """Start, stop or restart the loop; systemd's view afterwards."""
    reply = board_client.call(target, "service-ctl", target.root, action, what=f"{action} the service",
                              timeout=300)
    if not reply["ok"]:
        raise DeployError(f"{target.name}: {reply['error']}")
    return reply["unit"]


def logs(target: Target, lines: int) -> list[str]:
    """The journal's last lines of the loop and the gate."""
    reply = board_client.call(target, "service-logs", target.root, str(lines), what="reading the journal")
    if not reply["ok"]:
        raise DeployError(f"{target.name}: {reply['error']}")
    return reply["lines"]


def status_lines(name: str, s: dict[str, Any]) -> list[str]:
    """`edgerl service status` as a few lines a person reads."""
    if s.get("problem"):
        return [f"{name}: {s['problem']}"]
    unit, fig, result = s.get("unit") or {}, s.get("status") or {}, s.get("result")
    lines = [f"{name}: {unit.get('ActiveState', '?')} ({unit.get('SubState', '?')}), release {s.get('current')}, "
             f"committed {s.get('committed')}, restarts {unit.get('NRestarts', '?')}"]
    if fig:
        scores = fig.get("scores") or []
        lines.append(f"  loop: {fig.get('state')} on {fig.get('release')}, up {fig.get('uptime_s', 0):.0f} s, "
                     f"{figures_line(fig)}" + (f", last scores {' '.join(f'{x:+.0f}' for x in scores[-5:])}"
                                               if scores else ""))
    if s.get("gate"):
        lines.append(f"  gate: {s['gate']['release']} is being judged (attempt {s['gate'].get('attempts', 0)})")
    elif result:
        lines.append(f"  last gate: {verdict_line(result)}")
    return lines
