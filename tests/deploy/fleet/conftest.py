"""The twelve-board lab, built once per worker: the fleet's files run on one worker (xdist_group "fleet") and share
its boards, each test starting from what the last left (`everyone_on`)."""

from __future__ import annotations

import pytest
from fleet_world import make_fleet


@pytest.fixture(scope="session")
def fleet(ssh_world, sshd_starter, shared_venv, tmp_path_factory):
    made = make_fleet(ssh_world, sshd_starter, tmp_path_factory.mktemp("fleet"), shared_venv)
    yield made
    for name in made.names:
        made.thaw(name)
        made.servers[name].stop()
