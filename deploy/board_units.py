"""The two systemd user units a board's service runs on: the loop, and the gate that judges a new release.

Stdlib only, shipped with board_service.py. Every path in a command line is
quoted for systemd, its own specifiers and `$` escaped, so a board folder may
hold spaces, `%` or `$`.
"""

from __future__ import annotations

import os
import sys

from device.layout import CURRENT, GATE, GATE_UNIT, SERVE_STATUS, UNIT, VENV_LINK
from device.manifest import EXIT_UNTRUSTED

WATCHDOG_S = 10
RESTART_S = 2
START_ALLOWANCE_S = 240.0
"""How long a new release may take to its first decision before the gate fails (an emulated board is slow)."""


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
    gate = " ".join(_quote(w) for w in (sys.executable, os.path.join(code_dir, "board_service.py"), "gate", root))
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
