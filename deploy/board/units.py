"""The systemd user units of a board's service (the loop, the gate that judges a new release), and their manager.

Stdlib only, shipped with service.py. Every path in a command line is
quoted for systemd, its own specifiers and `$` escaped, so a board folder may
hold spaces, `%` or `$`.
"""

from __future__ import annotations

import os
import subprocess
import sys

from device.layout import CURRENT, GATE, GATE_UNIT, SERVE_STATUS, UNIT, VENV_LINK
from device.manifest import EXIT_UNTRUSTED

WATCHDOG_S = 10
RESTART_S = 2
START_ALLOWANCE_S = 240.0
"""How long a new release may take to its first decision before the gate fails (an emulated board is slow)."""
UNIT_PROPS = ("LoadState", "ActiveState", "SubState", "Result", "NRestarts", "MainPID", "InvocationID",
              "ExecMainStartTimestamp", "UnitFileState")


def _quote(word: str) -> str:
    """One word of a unit's command line, quoted for systemd (its own specifiers and $ escaped)."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def _unit(sections: dict[str, list[tuple[str, str]]]) -> str:
    """A unit file's text from its sections' (key, value) lines."""
    return "\n".join(f"[{name}]\n" + "".join(f"{key}={value}\n" for key, value in lines)
                     for name, lines in sections.items())


def unit_texts(root: str, code_dir: str) -> dict[str, str]:
    """The two unit files, by name."""
    current = os.path.join(root, CURRENT)
    serve = " ".join(_quote(w) for w in (os.path.join(current, VENV_LINK, "bin", "python"), "-m", "device", "serve",
                                         current, "--status", os.path.join(root, SERVE_STATUS)))
    gate = " ".join(_quote(w) for w in (sys.executable, os.path.join(code_dir, "service.py"), "gate", root))
    boot = {"Install": [("WantedBy", "default.target")]}
    return {
        UNIT: _unit({
            "Unit": [("Description", f"edgerl policy loop on {current}")],
            "Service": [("Type", "notify"), ("ExecStart", serve), ("Environment", _quote("PYTHONPATH=" + current)),
                        ("Environment", "PYTHONUNBUFFERED=1"), ("WorkingDirectory", root.replace("%", "%%")),
                        ("Restart", "on-failure"), ("RestartSec", str(RESTART_S)), ("WatchdogSec", str(WATCHDOG_S)),
                        # A release the trust policy refuses (exit 5) stays refused: restarting it is no cure.
                        ("RestartPreventExitStatus", str(EXIT_UNTRUSTED)),
                        # A hung loop may be stopped (SIGSTOP) or stuck in C: only SIGKILL ends it at once.
                        ("WatchdogSignal", "SIGKILL"), ("TimeoutStartSec", str(int(START_ALLOWANCE_S))),
                        ("TimeoutStopSec", "10")],
            **boot}),
        GATE_UNIT: _unit({
            "Unit": [("Description", "edgerl health gate: commit the new release or roll it back"),
                     ("ConditionPathExists", os.path.join(root, GATE).replace("%", "%%")), ("After", UNIT)],
            "Service": [("Type", "simple"), ("ExecStart", gate)],
            **boot}),
    }


AGENT_UNIT = "edgerl-agent.service"
AGENT_TIMER = "edgerl-agent.timer"


def agent_unit_texts(root: str, agent: str, every: str, python: str = sys.executable) -> dict[str, str]:
    """The pull agent's oneshot unit and its timer: every `every`, each run delayed by up to as much again."""
    poll = " ".join(_quote(w) for w in (python, "-I", agent, root))
    return {
        AGENT_UNIT: _unit({
            "Unit": [("Description", "edgerl pull agent: one poll of the board's channel")],
            "Service": [("Type", "oneshot"), ("ExecStart", poll), ("TimeoutStartSec", "1h")]}),
        AGENT_TIMER: _unit({
            "Unit": [("Description", f"edgerl pull agent, every {every} with jitter")],
            # Jitter spreads a fleet's polls over the period (systemd's RandomizedDelaySec), as Mender's client does.
            "Timer": [("OnBootSec", "1min"), ("OnUnitInactiveSec", every), ("RandomizedDelaySec", every),
                      ("Persistent", "true")],
            "Install": [("WantedBy", "timers.target")]}),
    }


def manager_env() -> dict[str, str]:
    """The environment systemctl and journalctl need to reach the login user's manager."""
    env = dict(os.environ)
    # An ssh login without PAM has no XDG_RUNTIME_DIR; the user manager's socket is there all the same.
    env.setdefault("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
    return env


def systemctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`systemctl --user ...` for the login user's manager."""
    return subprocess.run(["systemctl", "--user", *args], env=manager_env(), capture_output=True, text=True,
                          timeout=timeout)


def unit_state(unit: str = UNIT) -> dict[str, str]:
    """systemd's view of a unit: the UNIT_PROPS."""
    done = systemctl("show", unit, "--property=" + ",".join(UNIT_PROPS), timeout=30)
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
