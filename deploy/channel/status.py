"""`edgerl channel status`: one line per board, from the reports the boards PUT into the channel folder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from deploy.agent.rollout import REPORTS
from deploy.channel.publish import rollout
from deploy.channel.repo import Channel


def reports(channel_dir: Path) -> list[dict[str, Any]]:
    """Every board's last report, sorted by board; an unreadable one is listed as such, not skipped."""
    found = []
    for path in sorted((Path(channel_dir) / REPORTS).glob("*/report.json")):
        try:
            report = json.loads(path.read_text())
            if not isinstance(report, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as err:
            report = {"board": path.parent.name, "outcome": "unreadable", "detail": str(err)}
        report["board"] = path.parent.name  # the folder the server let this board write, not what it claims
        found.append(report)
    return found


def channel_status(channel_dir: Path) -> dict[str, Any]:
    """The rollout and each board's state: its release, how far behind the channel's, its last poll's outcome."""
    record = rollout(Channel(channel_dir, None)) or {}
    history = record.get("history", [])
    boards = []
    for report in reports(channel_dir):
        release = report.get("release")
        behind = history.index(release) if release in history else None
        boards.append({**report, "behind": behind, "age_s": round(time.time() - float(report.get("time", 0)), 1)})
    return {"release": record.get("release"), "stage": record.get("stage_bp", 0) / 100,
            "halted": record.get("halted", False), "boards": boards}


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def table(status: dict[str, Any]) -> list[str]:
    """The lines `edgerl channel status` prints."""
    if status["release"] is None:
        return ["the channel has no release yet"]
    state = "HALTED" if status["halted"] else f"stage {status['stage']:g}%"
    lines = [f"release {status['release']} ({state}); {len(status['boards'])} boards reported"]
    for b in status["boards"]:
        behind = {None: "not a release of this channel", 0: "up to date"}.get(b["behind"], f"{b['behind']} behind")
        lines.append(f"{b['board']:<24} {str(b.get('release') or '(none)'):<40} {b.get('outcome', '?'):<11} "
                     f"{behind:<14} {_age(b['age_s']):<12} {b.get('detail', '')}")
    return lines
