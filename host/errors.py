"""The host's errors: each is one line for the user, with the exit code the CLI returns."""

from __future__ import annotations

from device.manifest import EdgerlError


class ExportError(EdgerlError):
    """The export cannot proceed; the message says what to do."""


class VerifyError(EdgerlError):
    """The bundle's backends disagree beyond tolerance."""

    exit_code = 1


class UsageError(EdgerlError):
    """The command line asks for something that cannot be done."""


def one_line(err: BaseException) -> str:
    """An exception as the user sees it: its type and the first line of its message."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:240]}" if text else type(err).__name__
