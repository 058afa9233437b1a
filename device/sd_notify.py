"""systemd's notify protocol on the stdlib socket: READY=1, WATCHDOG=1, STATUS=... (no new dependency).

A service of `Type=notify` tells systemd it is ready and, with `WatchdogSec=`,
that it is still alive, by sending datagrams to `$NOTIFY_SOCKET`. Outside
systemd the variable is unset and every call is a no-op.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """One datagram socket to systemd, opened once; silent when there is no systemd to tell."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # An address starting with '@' is in the abstract namespace, spelled with a NUL byte.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None
        """systemd's watchdog timeout for this process, or None when it has none."""
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def active(self) -> bool:
        """A systemd notify socket was given."""
        return self._sock is not None

    @property
    def ping_every_s(self) -> float:
        """How often to send WATCHDOG=1: a third of the timeout, so one late ping is not a restart."""
        return self.watchdog_s / 3 if self.watchdog_s else 1.0

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` fields in one datagram; False when no systemd listens (never raises)."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError:
            return False

    def close(self) -> None:
        """Close the socket; later sends are no-ops."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
