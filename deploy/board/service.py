"""The board's service ops: systemd units that serve `current`, and the health gate that commits or rolls back.

    python3 .board/<digest>/service.py OP ARG...   ->  one JSON line (runner's contract)

Stdlib only, Python 3.9+, shipped with side.py. The service is a
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

# Side by side on the board, top-level modules there; here the deploy.board package (a bare name could be anyone's).
if __package__:
    from deploy.board import side
    from deploy.board.durable import read_json, relink, remove_durably, write_durably
    from deploy.board.health import watch
    from deploy.board.runner import Refused, run_op
    from deploy.board.units import AGENT_TIMER, agent_unit_texts, manager_env, systemctl, unit_state, unit_texts
else:
    import side
    from durable import read_json, relink, remove_durably, write_durably
    from health import watch
    from runner import Refused, run_op
    from units import AGENT_TIMER, agent_unit_texts, manager_env, systemctl, unit_state, unit_texts

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
)

MAX_ATTEMPTS = 3
"""Boots a pending gate may span (power cuts) before its release is rolled back unjudged."""
def user_name() -> str:
    """The login user's name."""
    return pwd.getpwuid(os.getuid()).pw_name


def runs_systemd() -> bool:
    """Whether systemd is this machine's init (its tools alone, in a container, are not)."""
    return bool(shutil.which("systemctl")) and os.path.isdir("/run/systemd/system")


NO_SYSTEMD = "this board does not run systemd (a container, or a local folder?)"


def service_problem(root: str) -> str | None:
    """Why this board cannot run the service, in one line, or None."""
    if not runs_systemd():
        return f"{NO_SYSTEMD}, which keeps a service running"
    user = user_name()
    if not os.path.exists(f"/var/lib/systemd/linger/{user}"):
        subprocess.run(["loginctl", "--no-ask-password", "enable-linger", user], capture_output=True, timeout=30)
    private = os.path.join(manager_env()["XDG_RUNTIME_DIR"], "systemd", "private")
    for _ in range(20):  # a manager started by enable-linger just now needs a moment
        if os.path.exists(f"/var/lib/systemd/linger/{user}") and os.path.exists(private):
            return None
        time.sleep(0.5)
    return (f"systemd keeps {user}'s services running only while {user} is logged in; run this once on the board "
            f"and deploy again: sudo loginctl enable-linger {user}")


def unit_folder() -> str:
    """Where the login user's systemd units live."""
    return os.path.join(os.path.expanduser("~"), ".config", "systemd", "user")


def op_service_install(root: str) -> dict[str, Any]:
    """Write (or update) the two units, reload systemd if they changed, enable them at boot."""
    problem = service_problem(root)
    if problem:
        raise Refused(problem, no_service=True, no_systemd=not runs_systemd())
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


def op_agent_timer(root: str, agent: str, every: str) -> dict[str, Any]:
    """The pull agent's units written, and its timer enabled and started (`edgerl enroll`)."""
    problem = service_problem(root)
    if problem:
        raise Refused(problem.split(";")[0], no_service=True)
    os.makedirs(unit_folder(), exist_ok=True)
    for name, text in agent_unit_texts(os.path.abspath(root), agent, every).items():
        write_durably(os.path.join(unit_folder(), name), text)
    systemctl("daemon-reload")
    done = systemctl("enable", "--now", AGENT_TIMER)
    if done.returncode != 0:
        raise Refused(f"systemctl --user enable --now {AGENT_TIMER} failed: {done.stderr.strip()[-300:]}")
    return {"timer": AGENT_TIMER, "every": every}


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
    relink(os.path.join(root, COMMITTED), os.path.join(RELEASES, gate["release"]))
    return _conclude(root, gate, "committed", f"healthy for {gate['seconds']:g} s", figures)


def _rollback(root: str, gate: dict[str, Any], reason: str, figures: dict[str, Any] | None) -> dict[str, Any]:
    back = gate.get("back_to")
    if not back or back == gate["release"]:
        return _conclude(root, gate, "failed", reason + "; there is no earlier release to go back to", figures)
    problems = side.judged(os.path.join(root, RELEASES, back))
    if problems:
        return _conclude(root, gate, "failed", f"{reason}; the release to go back to, {back}, is broken "
                                               f"({'; '.join(problems[:2])})", figures)
    if not gate.get("rolling_back"):
        # Said before the first link moves: after a power cut anywhere from here on, `current` no longer names the
        # release, and the next boot's gate would report a switch that never happened; it finishes this instead.
        gate["rolling_back"] = {"reason": reason, "figures": figures}
        write_durably(os.path.join(root, GATE), json.dumps(gate))
    relink(os.path.join(root, CURRENT), os.path.join(RELEASES, back))
    relink(os.path.join(root, PREVIOUS), os.path.join(RELEASES, gate["release"]))
    result = _conclude(root, gate, "rolled_back", reason, figures)
    systemctl("reset-failed", UNIT)
    systemctl("restart", "--no-block", UNIT)
    return result


def op_gate(root: str) -> dict[str, Any]:
    """The gate itself (edgerl-gate.service): judge the pending release, then commit it or roll it back."""
    path = os.path.join(root, GATE)
    gate = read_json(path)
    if gate is None:
        return {"verdict": None}
    if gate.get("rolling_back"):  # lost power inside the rollback: finish it, and say what it was
        begun = gate["rolling_back"]
        return _rollback(root, gate, f"{begun['reason']} (rolled back across a power loss)", begun.get("figures"))
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
    relink(os.path.join(root, COMMITTED), os.path.join(RELEASES, current))
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
    if not runs_systemd():
        raise Refused(f"{NO_SYSTEMD}, so it keeps no journal: a loop run in the foreground (`python -m device "
                      "serve`) logs to its own terminal", no_service=True, no_systemd=True)
    done = subprocess.run(["journalctl", "--user", "-u", UNIT, "-u", GATE_UNIT, "-n", str(int(lines)), "--no-pager",
                           "-o", "short-iso"], env=manager_env(), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise Refused(f"journalctl failed: {done.stderr.strip()[-300:]}")
    return {"lines": done.stdout.splitlines()}


OPS: dict[str, Callable[..., dict[str, Any] | None]] = {
    "service-install": op_service_install, "gate-begin": op_gate_begin, "service-switch": op_service_switch,
    "gate-resume": op_gate_resume,
    "gate": op_gate, "gate-status": op_gate_status, "service-status": op_service_status,
    "service-ctl": op_service_ctl, "service-logs": op_service_logs, "service-follow": op_service_follow,
    "agent-timer": op_agent_timer,
}


if __name__ == "__main__":
    sys.exit(run_op(OPS, sys.argv[1:]))
