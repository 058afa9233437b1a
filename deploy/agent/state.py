"""What the agent keeps on the board between polls, what one poll ends in, and the report it PUTs.

In the board's channel/ folder:
- agent.json        the channel's URL, the board's id, the CA, releases kept, the agent's script (written by
                    `edgerl enroll`; paths relative to the board folder)
- credentials       `board:password` for the report area (0600)
- last-poll.json    the last poll's outcome, whether the server has it, a release given up on
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

if __package__:
    from deploy.agent.fetch import ChannelHttp
    from deploy.agent.rollout import BOARD_ID, REPORTS
    from deploy.board.durable import read_json, write_durably
else:
    from durable import read_json, write_durably
    from fetch import ChannelHttp
    from rollout import BOARD_ID, REPORTS

from tuf.api.exceptions import DownloadError

from device import layout
from device.manifest import EXIT_BAD_INPUT, EXIT_FAILED_CHECK, EXIT_OK, EXIT_UNTRUSTED

CONFIG = "agent.json"
CREDENTIALS = "credentials"
LAST_POLL = "last-poll.json"


@dataclass(frozen=True)
class AgentConfig:
    """The agent's settings on this board."""

    folder: str
    """The board's channel/ folder."""
    url: str
    board: str
    ca: str | None = None
    keep: int = 3
    every: str = "10min"
    given_up: str | None = None
    """A release whose self-test failed on this board: not taken again (a new release is)."""

    @classmethod
    def load(cls, root: str) -> AgentConfig:
        """The settings `edgerl enroll` wrote, or ValueError saying the board is not enrolled."""
        folder = os.path.join(root, layout.CHANNEL)
        saved = read_json(os.path.join(folder, CONFIG))
        if not saved or not isinstance(saved.get("url"), str) or not BOARD_ID.fullmatch(str(saved.get("board"))):
            raise ValueError(f"{root} is not enrolled in a channel (no {layout.CHANNEL}/{CONFIG}): "
                             "run `edgerl enroll --on BOARD --channel URL`")
        last = read_json(os.path.join(folder, LAST_POLL)) or {}
        ca = os.path.join(root, saved["ca"]) if saved.get("ca") else None  # relative to the board folder
        return cls(folder, saved["url"].rstrip("/"), saved["board"], ca, int(saved.get("keep", 3)),
                   str(saved.get("every", "10min")), last.get("given_up"))

    def credentials(self) -> tuple[str, str] | None:
        """(user, password) for the report area, or None when the board has none."""
        try:
            with open(os.path.join(self.folder, CREDENTIALS)) as fh:
                user, _, password = fh.read().strip().partition(":")
        except OSError:
            return None
        return (user, password) if password else None


@dataclass
class Outcome:
    """How one poll ended: a word, one line for a person, and the figures."""

    outcome: str
    """current, installed, judging, committed, rolled-back, waiting, halted, busy, refused, unreachable,
    not-enrolled."""
    detail: str
    current: str | None = None
    previous: str | None = None
    failed: bool = False
    error: bool = False
    gave_up: bool = False
    untrusted: bool = False
    fetched: int = 0
    reused: int = 0
    seconds: float = 0.0
    pushed: int = 0
    """Recorded shards this poll sent to the channel's data area."""
    gate: dict[str, Any] | None = None
    """The board's health gate on a service release: verdict, reason, figures."""
    traffic: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        """The journal's one line."""
        return f"edgerl-agent: {self.outcome}: {self.detail}"

    def reply(self) -> dict[str, Any]:
        """The JSON the host's `edgerl channel poll` reads."""
        return {"ok": not (self.failed or self.error), **asdict(self)}

    def exit_code(self) -> int:
        """The documented exit status."""
        if self.outcome == "not-enrolled":
            return EXIT_BAD_INPUT
        if self.untrusted:
            return EXIT_UNTRUSTED
        return EXIT_FAILED_CHECK if (self.failed or self.error) else EXIT_OK


def report_body(cfg: AgentConfig, offered: str | None, outcome: Outcome) -> dict[str, Any]:
    """What the board tells the channel's owner: who, what it runs and was offered, how the poll ended, when."""
    return {"board": cfg.board, "host": socket.gethostname(), "release": outcome.current, "offered": offered,
            "previous": outcome.previous, "outcome": outcome.outcome, "detail": outcome.detail,
            "fetched": outcome.fetched, "reused": outcome.reused, "seconds": outcome.seconds, "gate": outcome.gate,
            "time": time.time()}


def finish(cfg: AgentConfig, http: ChannelHttp, offered: str | None, outcome: Outcome) -> int:
    """Report a change to the server, remember this poll, print its line and JSON; returns the exit status.

    A report goes out when the outcome differs from the last one the server has (so a poll that changes nothing
    costs no PUT), and again at the next poll if it did not arrive.
    """
    path = os.path.join(cfg.folder, LAST_POLL)
    last = read_json(path) or {}
    # A board that installed a release and then finds it current has nothing new to say.
    word = "current" if outcome.outcome == "installed" else outcome.outcome
    key = [word, outcome.current, offered if outcome.failed else None]
    reported = last.get("key") == key and last.get("reported", False)
    creds = cfg.credentials()
    if not reported and creds and outcome.outcome not in ("busy", "unreachable"):
        try:
            status = http.put_json(f"{REPORTS}/{cfg.board}/report.json", report_body(cfg, offered, outcome), *creds)
            reported = 200 <= status < 300
            if not reported:
                outcome.detail += f" (the report was refused: HTTP {status})"
        except DownloadError as err:  # a report that fails is retried at the next poll, never fatal
            outcome.detail += f" (the report did not reach the server: {err})"
    outcome.traffic = asdict(http.traffic)
    given_up = offered if outcome.gave_up else last.get("given_up")
    try:
        write_durably(path, json.dumps({"key": key, "reported": reported, "time": time.time(), "given_up": given_up,
                                        **outcome.reply()}, sort_keys=True))
    except OSError as err:  # a card gone read-only: the journal line and the report still say what happened
        outcome.detail += f" (this poll is not remembered on the board: {err.strerror})"
    print(outcome.line(), file=sys.stderr)
    print(json.dumps(outcome.reply()))
    return outcome.exit_code()
