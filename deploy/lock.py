"""The board's deploy lock: one deploy at a time, and no lock that outlives its deploy."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from deploy import board_client
from deploy.link.targets import DeployError, Spawned, Target


class BoardLock:
    """The board's deploy lock, held by a board process fed by our heartbeat (board/side.py's `hold-lock`).

    The kernel releases it when that process ends: when we close it, when
    this process dies (the connection closes), or when our heartbeat stops
    for the board's silence timeout (a cut link). A lock whose holder has
    stopped hearing from its deploy is waited out, with a line saying so.
    """

    def __init__(self, target: Target, say: Callable[[str], None] = print) -> None:
        self.target, self.say = target, say
        self.owner = f"{socket.gethostname()} pid {os.getpid()} {uuid.uuid4().hex[:8]} since {time.ctime()}"
        self._stop = threading.Event()
        self._proc: Spawned | None = None

    def _try(self) -> tuple[Spawned | None, dict[str, Any]]:
        t = self.target
        proc = board_client.spawn(t, "hold-lock", t.root, self.owner, str(t.silence_timeout),
                                  what="taking the deploy lock")
        line = proc.readline(timeout=t.silence_timeout + 2 * t.heartbeat)
        answer = board_client.parse_reply(line)
        if answer is None:
            proc.close()
            if not line:
                raise t.lost("taking the deploy lock") from None
            raise DeployError(f"cannot take the deploy lock on {t.name}: {line.strip()[-200:]}") from None
        if answer.get("locked"):
            return proc, answer
        proc.close()
        if answer.get("read_only"):
            raise DeployError(f"cannot take the deploy lock on {t.name}: {answer['error']}; nothing was changed")
        if answer.get("no_space"):
            raise DeployError(f"cannot take the deploy lock on {t.name}: {answer['error']}; free space there and "
                              "rerun: the old release is still current")
        return None, answer

    def ensure(self) -> None:
        """Hold the lock again if a reconnect ended its holder (its channel died with the old connection).

        Another deploy may have taken it in between; then the switch, which
        checks the owner, refuses instead of mixing two deploys.
        """
        if self._proc is None or self._proc.alive():
            return
        self._proc.close()
        deadline = time.monotonic() + self.target.silence_timeout
        while True:
            self._proc, answer = self._try()
            if self._proc is not None:
                return
            if answer.get("held_by") != self.owner or time.monotonic() > deadline:
                raise DeployError(f"{self.target.name}: the deploy lock was taken by another deploy "
                                  f"({answer.get('held_by')}) while the link was down; nothing was switched")
            time.sleep(0.2)  # our old holder has not seen its connection close yet

    def __enter__(self) -> BoardLock:
        t = self.target
        deadline = None
        while True:
            self._proc, answer = self._try()
            if self._proc is not None:
                break
            quiet = float(answer.get("quiet_s", 0.0))
            if quiet > 3 * t.heartbeat:  # its deploy stopped feeding it: the holder exits at the silence timeout
                if deadline is None:
                    wait = max(0.0, t.silence_timeout - quiet) + 3 * t.heartbeat
                    deadline = time.monotonic() + wait
                    self.say(f"{t.name}: the lock is held by a deploy that went silent {quiet:.0f} s ago "
                             f"({answer.get('held_by')}); waiting up to {wait:.0f} s for it to expire")
                if time.monotonic() < deadline:
                    time.sleep(min(1.0, t.heartbeat))
                    continue
            raise DeployError(f"another deploy is running on {t.name} ({answer.get('held_by')}); wait for it to "
                              "finish (its lock goes away by itself when it ends or dies)")
        threading.Thread(target=self._beat, daemon=True, name=f"edgerl-lock-{t.name}").start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.target.heartbeat):
            if self._proc is not None:
                self._proc.write(b"\n")

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.close()
