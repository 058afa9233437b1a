"""The argument types the command lines share."""

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


def positive(text: str) -> int:
    """A positive integer."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value
