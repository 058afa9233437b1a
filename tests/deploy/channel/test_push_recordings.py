"""A board that pulls its releases pushes its recordings back to the same server, and they load as SSH-pulled ones."""

from __future__ import annotations

import json

from device.manifest import load_bundle
from host.data import load_episodes
from host.policies import PolicyConfig, build_env


def _record_a_game(world, board, steps=50):
    ran = world.cli("run", "--on", f"local:{board}", "--max-steps", steps, "--reports", world.tmp / "reports",
                    "--record", "games")
    assert ran.returncode == 0, ran.stderr
    return json.loads(next((world.tmp / "reports").glob("*.json")).read_text())


def test_recorded_shards_go_to_the_channel_are_pruned_on_the_board_and_load_as_torchrl_data(channel_world, bundles):
    world = channel_world
    board = world.board("pi1")
    world.publish(bundles["stacked"])
    assert world.poll(board)["outcome"] == "installed"
    report = _record_a_game(world, board)
    shards = json.loads((board / "data" / "games" / "index.json").read_text())["shards"]
    assert shards

    world.server.failing(True, area="data")  # the server refuses the data: nothing pruned, nothing lost
    refused = world.poll(board)
    assert refused["pushed"] == 0
    assert json.loads((board / "data" / "games" / "index.json").read_text())["shards"] == shards
    world.server.failing(False, area="data")

    pushed = world.poll(board)
    assert pushed["pushed"] == len(shards) and "pruned here" in pushed["detail"], pushed
    assert json.loads((board / "data" / "games" / "index.json").read_text())["shards"] == []
    again = world.poll(board)  # idempotent: nothing left to send
    assert again["pushed"] == 0

    out = world.tmp / "pulled"
    pulled = world.cli("data", "pull", "--channel", world.dir, "--out", out)
    assert pulled.returncode == 0, pulled.stderr
    spec = load_bundle(bundles["stacked"]).env
    games = load_episodes(out / "pi1" / "games", build_env(PolicyConfig(network="stacked"), spec),
                          keys=["action", "pixels_trsf"])
    assert games["action"].tolist() == list(bytes.fromhex(report["episodes"][0]["actions_hex"]))
    assert games["pixels_trsf"].shape == (50, 4, 84, 84)
    rerun = world.cli("data", "pull", "--channel", world.dir, "--out", out)
    assert "0 shards copied" in rerun.stdout


def test_a_board_cannot_put_into_another_boards_data(channel_world):
    import urllib3

    world = channel_world
    world.board("pi1")
    user, password = (world.tmp / "boards" / "pi1" / "channel" / "credentials").read_text().strip().split(":", 1)
    pool = urllib3.PoolManager(ca_certs=str(world.server.ca))
    headers = urllib3.make_headers(basic_auth=f"{user}:{password}")
    assert pool.request("PUT", f"{world.server.url}/data/pi2/games/shard-1.npz", body=b"x", headers=headers).status \
        == 403
    assert pool.request("PUT", f"{world.server.url}/data/pi1/games/shard-1.npz", body=b"x", headers=headers).status \
        in (201, 204)
