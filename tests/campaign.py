"""How long a figure campaign runs: one short trial in the tiers, full length under `make campaigns`.

A campaign test (marked `campaign`) runs the same code at either length, so the short trial CI runs keeps the
long one from rotting; `EDGERL_CAMPAIGN=full` (set by `make campaigns`) gives the figure docs/results.md quotes.
"""

from __future__ import annotations

import os

FULL = os.environ.get("EDGERL_CAMPAIGN", "") == "full"


def trials(short: int, full: int) -> int:
    """`full` under `make campaigns`, else `short`."""
    return full if FULL else short
