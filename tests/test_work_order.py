"""The tier's tests are handed to the two workers longest first, a group kept whole, whatever the last run timed."""

import random
from dataclasses import dataclass, field

import pytest
from work_order import NEW_S, bare_id, longest_first, merged


@dataclass
class Marker:
    args: tuple


@dataclass
class Collected:
    """What longest_first reads of a pytest item: its nodeid and its xdist_group marker."""

    nodeid: str
    group: str | None = None
    marks: dict = field(default_factory=dict)

    def get_closest_marker(self, name: str) -> Marker | None:
        return Marker((self.group,)) if name == "xdist_group" and self.group else None


def drawn_run(seed: int) -> tuple[list[Collected], dict[str, float] | None]:
    """A collection of 1-40 tests, some in one of two groups, and the last run's times for some of them (or none)."""
    rng = random.Random(seed)
    items = [Collected(f"tests/t{rng.randint(0, 5)}.py::test_{i}", rng.choice([None, None, None, "fleet", "lab"]))
             for i in range(rng.randint(1, 40))]
    if rng.random() < 0.2:
        return items, None
    timed = rng.sample(items, rng.randint(0, len(items)))
    return items, {item.nodeid: round(rng.expovariate(0.2), 2) for item in timed}


@pytest.mark.parametrize("seed", range(200))
def test_the_order_is_the_same_tests_groups_whole_heaviest_first(seed):
    items, durations = drawn_run(seed)
    ordered = longest_first(list(items), durations)
    assert sorted(i.nodeid for i in ordered) == sorted(i.nodeid for i in items)
    pieces: list[list[Collected]] = []
    for item in ordered:  # consecutive members of one group form one piece
        if pieces and item.group and pieces[-1][0].group == item.group:
            pieces[-1].append(item)
        else:
            pieces.append([item])
    groups = [p[0].group for p in pieces if p[0].group]
    assert len(groups) == len(set(groups)), "a group was split"
    for piece in pieces:  # within a piece, the collection order
        assert [items.index(i) for i in piece] == sorted(items.index(i) for i in piece)
    if durations is None:
        assert [bool(p[0].group) for p in pieces] == sorted((bool(p[0].group) for p in pieces), reverse=True)
    else:
        weights = [sum(durations.get(i.nodeid, NEW_S) for i in p) for p in pieces]
        assert weights == sorted(weights, reverse=True)


def test_a_grouped_tests_reports_are_timed_under_its_own_id_and_the_new_run_wins():
    seen = [("t.py::test_a@fleet", 1.0), ("t.py::test_a@fleet", 2.5), ("t.py::test_b[x@y]", 0.5)]
    assert bare_id("t.py::test_a@fleet") == "t.py::test_a"
    assert merged({"t.py::test_a": 9.0, "t.py::old": 4.0}, seen) == {
        "t.py::test_a": 3.5, "t.py::old": 4.0, "t.py::test_b[x@y]": 0.5}
