"""The board's service ops: systemd units that serve `current`, and the health gate that commits or rolls back.

    python3 .board/<digest>/board_service.py OP ARG...   ->  one JSON line (board_runner's contract)

Stdlib only, Python 3.9+, shipped with board_side.py. The service is a
systemd *user* unit of the login user (lingering keeps it running without a
login and starts it at boot), so a board reached as `pi` needs no root:

    edgerl.service        Type=notify: `python -m device serve <board>/current`, READY/WATCHDOG from the loop,
                          Restart=on-failure, enabled at boot
    edgerl-gate.service   runs `gate` while <board>/gate.json exists: after a switch, and again at every boot
                          until the gate ends

The gate is judged here, on the board, so a host that goes away right after
the switch changes nothing: the new release must run healthy (active, no
restart, status fresh, overrun share under the limit) for the gate's seconds;
then `committed` points at it. Otherwise `current` goes back to the release
that ran before and the service is restarted there. A release that has not
passed after MAX_ATTEMPTS boots (power cuts mid-gate) is rolled back too.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

# These files sit side by side on the board (`.board/<digest>/`); on the host they are the deploy package.
try:
    import board_side as side
    from board_runner import Refused, run_op
    from board_units import START_ALLOWANCE_S, unit_texts
except ImportError:
    from deploy import board_side as side
    from deploy.board_runner import Refused, run_op
    from deploy.board_units import START_ALLOWANCE_S, unit_texts

from device.layout import (
    COMMITTED,
    CURRENT,
    GATE,
    GATE_RESULT,
    GATE_UNIT,
    PREVIOUS,
    RELEASES,
    SERVE_STATUS,
    UNIT,
    VENV_LINK,
)

MAX_ATTEMPTS = 3
"""Boots a pending gate may span (power cuts) before its release is rolled back unjudged."""
STALE_S = 5.0
"""A status file unchanged for this long, while the unit is active, means the loop has stopped deciding."""
MIN_DECISIONS = 20
"""Overruns are judged once the loop has made this many decisions (a share of fewer says little)."""
UNIT_PROPS = ("LoadState", "ActiveState", "SubState", "Result", "NRestarts", "MainPID", "InvocationID",
              "ExecMainStartTimestamp", "UnitFileState")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # An ssh login without PAM has no XDG_RUNTIME_DIR; the user manager's socket is there all the same.
    env.setdefault("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
    return env


def systemctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`systemctl --user ...` for the login user's manager."""
    return subprocess.run(["systemctl", "--user", *args], env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def user_name() -> str:
    """The login user's name."""
    return pwd.getpwuid(os.getuid()).pw_name


def service_problem(root: str) -> str | None:
    """Why this board cannot run the service, in one line, or None."""
    if not shutil.which("systemctl") or not os.path.isdir("/run/systemd/system"):
        current = os.path.join(os.path.abspath(root), CURRENT)
        return ("this board does not run systemd (a container, or a local folder?); run the loop in the foreground "
                f"instead: PYTHONPATH={current} {os.path.join(current, VENV_LINK, 'bin', 'python')} -m device serve "
                f"{current}")
    user = user_name()
    if not os.path.exists(f"/var/lib/systemd/linger/{user}"):
        subprocess.run(["loginctl", "--no-ask-password", "enable-linger", user], capture_output=True, timeout=30)
    private = os.path.join(_env()["XDG_RUNTIME_DIR"], "systemd", "private")
    for _ in range(20):  # a manager started by enable-linger just now needs a moment
        if os.path.exists(f"/var/lib/systemd/linger/{user}") and os.path.exists(private):
            return None
        time.sleep(0.5)
    return (f"systemd keeps {user}'s services running only while {user} is logged in; run this once on the board "
            f"and deploy again: sudo loginctl enable-linger {user}")


def write_durably(path: str, text: str) -> None:
    """Replace a file so that a power cut leaves the old or the new content, never a torn one."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    side.fsync_dir(os.path.dirname(path))


def remove_durably(path: str) -> None:
    """Remove a file and make the removal survive a power cut."""
    if os.path.exists(path):
        os.remove(path)
        side.fsync_dir(os.path.dirname(path))


def read_json(path: str) -> dict[str, Any] | None:
    """A JSON file's object, or None when it is missing or unreadable."""
    try:
        with open(path) as fh:
            value = json.load(fh)
        return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None


def unit_state(unit: str = UNIT) -> dict[str, str]:
    """systemd's view of a unit: the UNIT_PROPS."""
    done = systemctl("show", unit, "--property=" + ",".join(UNIT_PROPS), timeout=30)
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def unit_folder() -> str:
    """Where the login user's systemd units live."""
    return os.path.join(os.path.expanduser("~"), ".config", "systemd", "user")


def op_service_install(root: str) -> dict[str, Any]:
    """Write (or update) the two units, reload systemd if they changed, enable them at boot."""
    problem = service_problem(root)
    if problem:
        raise Refused(problem, no_service=True)
    folder = unit_folder()
    os.makedirs(folder, exist_ok=True)
    changed = []
    for name, text in unit_texts(os.path.abspath(root), os.path.dirname(os.path.abspath(__file__))).items():
        path = os.path.join(folder, name)
        if read_text_or_none(path) != text:
            write_durably(path, text)
            changed.append(name)
    if changed:
        systemctl("daemon-reload")
    done = systemctl("enable", UNIT, GATE_UNIT)
    if done.returncode != 0:
        raise Refused(f"systemctl --user enable failed: {done.stderr.strip()[-300:]}")
    return {"changed": changed, "user": user_name(), "units": folder}


def read_text_or_none(path: str) -> str | None:
    """A file's text, or None when there is none."""
    try:
        return side.read_text(path)
    except OSError:
        return None


def op_gate_begin(root: str, release: str, seconds: str, max_overrun: str) -> dict[str, Any]:
    """Before the switch, under the deploy lock: record the gate the new release must pass."""
    path = os.path.join(root, GATE)
    pending = read_json(path)
    if pending is not None:
        raise Refused(f"the gate of {pending.get('release')} is still running", gate=pending)
    back_to = side.link_name(root, COMMITTED) or side.link_name(root, CURRENT)
    gate = {"release": release, "back_to": back_to, "seconds": float(seconds), "max_overrun": float(max_overrun),
            "attempts": 0, "begun_at": time.time()}
    remove_durably(os.path.join(root, GATE_RESULT))
    write_durably(path, json.dumps(gate))
    return {"gate": gate}


def op_service_switch(root: str) -> dict[str, Any]:
    """After the switch: restart the loop on the new current and start the gate (neither waits).

    The gate starts whatever the restart says: a loop that cannot start is its to judge and undo.
    """
    systemctl("reset-failed", UNIT)
    restarted = systemctl("restart", "--no-block", UNIT)
    systemctl("start", "--no-block", GATE_UNIT)
    if restarted.returncode != 0:
        raise Refused(f"systemctl --user restart failed: {restarted.stderr.strip()[-300:]}; the board's gate "
                      "rolls the release back")
    return {}


def op_gate_resume(root: str) -> dict[str, Any]:
    """Make sure a pending gate is being judged (its unit, and the loop it judges, started if they are not)."""
    if os.path.exists(os.path.join(root, GATE)):
        systemctl("start", "--no-block", UNIT)
        systemctl("start", "--no-block", GATE_UNIT)
    return op_gate_status(root)


def _conclude(root: str, gate: dict[str, Any], verdict: str, reason: str, figures: dict[str, Any] | None
              ) -> dict[str, Any]:
    result = {"verdict": verdict, "release": gate["release"], "back_to": gate.get("back_to"), "reason": reason,
              "attempts": gate.get("attempts", 0), "at": time.time(), "figures": figures}
    write_durably(os.path.join(root, GATE_RESULT), json.dumps(result))
    remove_durably(os.path.join(root, GATE))
    return result


def _commit(root: str, gate: dict[str, Any], figures: dict[str, Any] | None) -> dict[str, Any]:
    side.relink(os.path.join(root, COMMITTED), os.path.join(RELEASES, gate["release"]))
    return _conclude(root, gate, "committed", f"healthy for {gate['seconds']:g} s", figures)


def _rollback(root: str, gate: dict[str, Any], reason: str, figures: dict[str, Any] | None) -> dict[str, Any]:
    back = gate.get("back_to")
    if not back or back == gate["release"]:
        return _conclude(root, gate, "failed", reason + "; there is no earlier release to go back to", figures)
    problems = side.judged(os.path.join(root, RELEASES, back))
    if problems:
        return _conclude(root, gate, "failed", f"{reason}; the release to go back to, {back}, is broken "
                                               f"({'; '.join(problems[:2])})", figures)
    side.relink(os.path.join(root, CURRENT), os.path.join(RELEASES, back))
    side.relink(os.path.join(root, PREVIOUS), os.path.join(RELEASES, gate["release"]))
    result = _conclude(root, gate, "rolled_back", reason, figures)
    systemctl("reset-failed", UNIT)
    systemctl("restart", "--no-block", UNIT)
    return result


class Pulse:
    """Whether the loop still rewrites its status file, timed by this process's monotonic clock.

    Not its `updated_at` against the board's wall clock: a Pi without a real-time clock boots at fake-hwclock's
    last save and NTP steps the clock when the network comes up, often mid-gate, which would make a live loop
    look stale for a poll and roll a healthy release back. The status seen at the first poll is not fresh yet:
    after a power cut it is the dead loop's last.
    """

    def __init__(self) -> None:
        self.polled = False
        self.last: tuple[Any, ...] | None = None
        self.changed_at: float | None = None

    def fresh(self, status: dict[str, Any] | None) -> bool:
        """Whether the status changed within STALE_S (called once per poll)."""
        key = None if status is None else (status.get("pid"), status.get("updated_at"), status.get("decisions"))
        now = time.monotonic()
        if self.polled and key is not None and key != self.last:
            self.changed_at = now
        self.polled, self.last = True, key
        return self.changed_at is not None and now - self.changed_at < STALE_S


def _health(gate: dict[str, Any], unit: dict[str, str], status: dict[str, Any] | None, fresh: bool
            ) -> tuple[bool, str | None]:
    """(running healthy now, why it failed or None); `fresh`: the status file is still being rewritten."""
    mine = status is not None and status.get("release") == gate["release"]
    if mine and status.get("state") == "failed":
        return False, f"the loop stopped: {status.get('error')}"
    if unit.get("LoadState") not in (None, "loaded"):
        return False, f"systemd cannot load the unit ({unit.get('LoadState')})"
    if unit.get("ActiveState") == "failed" or unit.get("SubState") == "auto-restart":
        return False, f"the loop exited ({unit.get('Result')}) and systemd is restarting it"
    running = unit.get("ActiveState") == "active" and mine and fresh and status.get("state") == "running"
    late = overrun_failure(gate, status, final=False) if running else None
    return (False, late) if late else (running, None)


def overrun_failure(gate: dict[str, Any], status: dict[str, Any], final: bool) -> str | None:
    """Why the loop's missed periods fail the gate, or None.

    A period is missed when its decision overran it or when no decision was made in it at all (skipped: the
    loop stalled outside its phases, or an overrun carried it past the next deadline); both count against the
    allowance. The allowance is a share of the periods of the whole gate, so a burst in its first seconds (a
    cold cache, a first inference) fails it early only once no clean run for the rest of the gate could bring
    the share back.
    """
    decisions, overruns = int(status.get("decisions") or 0), int(status.get("overruns") or 0)
    skipped = int(status.get("skipped_periods") or 0)
    periods, missed = decisions + skipped, overruns + skipped
    window = periods if final else max(periods, float(status.get("target_hz") or 0) * gate["seconds"])
    if decisions < MIN_DECISIONS or missed <= gate["max_overrun"] * window:
        return None
    return (f"it missed its deadline on {missed / periods:.0%} of periods ({overruns} overran and {skipped} were "
            f"skipped, of {periods}; the gate allows {gate['max_overrun']:.0%}; worst overrun "
            f"{status.get('worst_overrun_ms', 0):.1f} ms)")


def watch(root: str, gate: dict[str, Any], poll: float = 1.0) -> tuple[str | None, dict[str, Any] | None]:
    """Watch the loop until it has run healthy for the gate's seconds: (why it failed or None, its figures)."""
    started, healthy_since = time.monotonic(), None
    restarts, invocation, status, pulse = None, None, None, Pulse()
    while True:
        time.sleep(poll)
        unit, status = unit_state(), read_json(os.path.join(root, SERVE_STATUS))
        restarts = int(unit.get("NRestarts") or 0) if restarts is None else restarts
        running, failure = _health(gate, unit, status, pulse.fresh(status))
        if failure is None and int(unit.get("NRestarts") or 0) > restarts:
            failure = "systemd restarted the loop (it crashed, or its watchdog pings stopped)"
        if failure is None and running:
            invocation = invocation or unit.get("InvocationID")
            if unit.get("InvocationID") != invocation:
                failure = "systemd restarted the loop"
        if failure is None and not running and healthy_since is not None:
            failure = f"the loop stopped deciding (unit {unit.get('ActiveState')}/{unit.get('SubState')})"
        if failure:
            return failure, status
        now = time.monotonic()
        if running:
            healthy_since = healthy_since or now
            if now - healthy_since >= gate["seconds"]:
                return overrun_failure(gate, status, final=True), status
        elif now - started > START_ALLOWANCE_S:
            return f"the loop made no decision within {START_ALLOWANCE_S:.0f} s", status


def op_gate(root: str) -> dict[str, Any]:
    """The gate itself (edgerl-gate.service): judge the pending release, then commit it or roll it back."""
    path = os.path.join(root, GATE)
    gate = read_json(path)
    if gate is None:
        return {"verdict": None}
    if side.link_name(root, COMMITTED) == gate["release"] != gate.get("back_to"):  # lost power while tidying up
        return _conclude(root, gate, "committed", "committed before a power loss", None)
    if side.link_name(root, CURRENT) != gate["release"]:
        return _conclude(root, gate, "not_switched", "the switch never happened (the deploy or the power stopped "
                                                     "first); the old release runs", None)
    gate["attempts"] = int(gate.get("attempts", 0)) + 1
    write_durably(path, json.dumps(gate))
    if gate["attempts"] > MAX_ATTEMPTS:
        return _rollback(root, gate, f"it did not pass its gate in {MAX_ATTEMPTS} boots", None)
    failure, figures = watch(root, gate)
    return _commit(root, gate, figures) if failure is None else _rollback(root, gate, failure, figures)


def op_gate_status(root: str) -> dict[str, Any]:
    """The pending gate, if any, and how the last one ended."""
    return {"gate": read_json(os.path.join(root, GATE)), "result": read_json(os.path.join(root, GATE_RESULT)),
            "current": side.link_name(root, CURRENT), "committed": side.link_name(root, COMMITTED)}


def op_service_follow(root: str) -> dict[str, Any]:
    """After `edgerl rollback`: where a service runs, it commits to and restarts on the release now current."""
    if not os.path.isfile(os.path.join(unit_folder(), UNIT)) or service_problem(root):
        return {"restarted": False}
    current = side.link_name(root, CURRENT)  # just set by the rollback this follows
    side.relink(os.path.join(root, COMMITTED), os.path.join(RELEASES, current))
    systemctl("reset-failed", UNIT)
    systemctl("restart", "--no-block", UNIT)
    return {"restarted": True, "committed": current}


def op_service_status(root: str) -> dict[str, Any]:
    """systemd's view of the loop, the loop's own figures, the releases and the gate."""
    problem = service_problem(root)
    unit = {} if problem else unit_state()
    return {"problem": problem, "unit": unit, "status": read_json(os.path.join(root, SERVE_STATUS)),
            **op_gate_status(root), "previous": side.link_name(root, PREVIOUS), "user": user_name()}


def op_service_ctl(root: str, action: str) -> dict[str, Any]:
    """Start, stop or restart the loop."""
    if action not in ("start", "stop", "restart"):
        raise Refused(f"unknown action {action!r}: start, stop or restart")
    problem = service_problem(root)
    if problem:
        raise Refused(problem, no_service=True)
    done = systemctl(action, UNIT, timeout=300)
    if done.returncode != 0:
        raise Refused(f"systemctl --user {action} {UNIT} failed: {done.stderr.strip()[-300:]}")
    return {"unit": unit_state()}


def op_service_logs(root: str, lines: str) -> dict[str, Any]:
    """The loop's and the gate's last journal lines."""
    done = subprocess.run(["journalctl", "--user", "-u", UNIT, "-u", GATE_UNIT, "-n", str(int(lines)), "--no-pager",
                           "-o", "short-iso"], env=_env(), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise Refused(f"journalctl failed: {done.stderr.strip()[-300:]}")
    return {"lines": done.stdout.splitlines()}


OPS: dict[str, Callable[..., dict[str, Any] | None]] = {
    "service-install": op_service_install, "gate-begin": op_gate_begin, "service-switch": op_service_switch,
    "gate-resume": op_gate_resume,
    "gate": op_gate, "gate-status": op_gate_status, "service-status": op_service_status,
    "service-ctl": op_service_ctl, "service-logs": op_service_logs, "service-follow": op_service_follow,
}


if __name__ == "__main__":
    sys.exit(run_op(OPS, sys.argv[1:]))
