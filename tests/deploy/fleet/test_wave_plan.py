"""How a rollout is cut into waves and when it stops, as Ansible's `serial` and `max_fail_percentage` users expect."""

from __future__ import annotations

import pytest

from deploy.fleet.waves import allowed_failures, parse_size, parse_waves, wave_sizes
from deploy.link.targets import DeployError


@pytest.mark.parametrize("spec, boards, sizes", [
    ("1,25%,100%", 12, [1, 3, 8]),
    ("1,10%,100%", 5, [1, 1, 3]),      # a percentage is at least one board
    ("2", 5, [2, 2, 1]),               # the last entry repeats until every board had its turn
    ("100%", 3, [3]),
    ("1,50%", 1, [1]),
])
def test_waves_take_boards_in_inventory_order_the_last_size_repeating(spec, boards, sizes):
    assert wave_sizes(parse_waves(spec), boards) == sizes


@pytest.mark.parametrize("max_fail, touched, allowed", [("0", 12, 0), ("1", 1, 1), ("10%", 1, 0), ("10%", 12, 1),
                                                         ("50%", 4, 2)])
def test_max_fail_is_a_count_or_a_share_of_the_boards_touched_so_far(max_fail, touched, allowed):
    assert allowed_failures(parse_size(max_fail, "--max-fail"), touched) == allowed


@pytest.mark.parametrize("spec", ["0", "1,,2", "x", "150%", "-1", "0%"])
def test_a_wave_list_that_makes_no_sense_is_one_line(spec):
    with pytest.raises(DeployError, match="--waves"):
        parse_waves(spec)
