"""The argument types only the host's command lines take (those both sides take: `device.args`)."""

from __future__ import annotations

import argparse


def seconds(text: str) -> float:
    """A number of seconds, 0 < S <= 86400."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds between 0 and 86400")
    return value
