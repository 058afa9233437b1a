"""Under pytest-xdist the longest pieces of work start first, so neither worker is left idle at the end.

A piece is what one worker must run whole: a test, or all the tests of one xdist_group (the fleet's twelve
boards). The scheduler hands pieces out in collection order as workers come free, so a 16-s test handed out
last keeps one worker busy while the other waits; longest first leaves the short ones to even out the end.
A piece weighs its tests' time in the last run on this checkout (pytest's cache, `edgerl/durations`); a test
the cache has not seen weighs NEW_S. With no cache (a fresh checkout) only the groups go first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

KEY = "edgerl/durations"
NEW_S = 5.0
"""A test not yet timed: near the slow end (the tests written since the last run are often the heavy ones)."""


def bare_id(nodeid: str) -> str:
    """The nodeid without the `@group` suffix pytest-xdist gives a grouped test's reports."""
    return re.sub(r"@\w+$", "", nodeid)


def longest_first(items: list, durations: dict[str, float] | None) -> list:
    """`items` in pieces, the heaviest piece first; within a piece, and between equal ones, the collection order."""
    pieces: dict[str, list] = {}
    for item in items:
        group = item.get_closest_marker("xdist_group")
        pieces.setdefault(f"group {group.args[0]}" if group else item.nodeid, []).append(item)

    def weight(piece: tuple[str, list]) -> float:
        name, members = piece
        if durations is None:
            return 1.0 if name.startswith("group ") else 0.0
        return sum(durations.get(bare_id(item.nodeid), NEW_S) for item in members)

    ordered = sorted(pieces.items(), key=weight, reverse=True)  # sorted() is stable: ties keep their order
    return [item for _, members in ordered for item in members]


def merged(stored: dict[str, float] | None, seen: Iterable[tuple[str, float]]) -> dict[str, float]:
    """The cache's durations with this run's (a test's setup, call and teardown summed) written over them."""
    now: dict[str, float] = {}
    for nodeid, seconds in seen:
        key = bare_id(nodeid)
        now[key] = round(now.get(key, 0.0) + seconds, 2)
    return {**(stored or {}), **now}
