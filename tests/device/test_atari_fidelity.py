"""The device's Atari loop plays exactly what the training env (TorchRL GymEnv) plays."""

import numpy as np
import pytest
import torch

from device.atari import AtariGame
from device.manifest import EnvSpec
from host.envs import action_table, make_base_env


def _host_and_device(spec: EnvSpec, seed: int, steps: int, seed_in_init: bool = False):
    env = make_base_env(spec)
    ids, _ = action_table(env)
    env.set_seed(seed)
    td = env.reset()
    if seed_in_init:  # the cold-start path: the ROM is loaded once, already seeded
        game = AtariGame(spec, ids, seed=seed)
    else:
        game = AtariGame(spec, ids)
        game.seed(seed)
    screen = game.reset()
    assert np.array_equal(td["pixels"].numpy(), screen), "first screens differ"
    actions = np.random.default_rng(seed).integers(0, len(ids), size=steps)
    compared = 0
    for a in actions:
        td["action"] = torch.tensor(int(a))
        td = env.step(td)["next"]
        result = game.step(int(a))
        assert np.array_equal(td["pixels"].numpy(), game.screen), f"screens differ at step {compared}"
        assert td["reward"].item() == result.reward
        assert bool(td["terminated"]) == result.terminated and bool(td["truncated"]) == result.truncated
        compared += 1
        if result.done:
            td = env.reset()
            assert np.array_equal(td["pixels"].numpy(), game.reset())
    env.close()
    return compared, actions


@pytest.mark.parametrize("sticky", [0.0, 0.25])
@pytest.mark.parametrize("seed_in_init", [False, True], ids=["seed-after-init", "seeded-at-init"])
def test_device_loop_reproduces_training_env_bit_for_bit(sticky, seed_in_init):
    spec = EnvSpec(repeat_action_probability=sticky)
    compared, _ = _host_and_device(spec, seed=7, steps=600, seed_in_init=seed_in_init)
    assert compared == 600


def test_episode_end_and_truncation_match_training_env():
    # A short frame limit forces several truncations within the run.
    spec = EnvSpec(max_num_frames_per_episode=400)
    compared, _ = _host_and_device(spec, seed=3, steps=400)
    assert compared == 400


def test_different_seeds_give_different_games_with_sticky_actions():
    spec = EnvSpec(repeat_action_probability=0.25)
    screens = []
    for seed in (1, 2):
        game = AtariGame(spec, [0, 1, 3, 4, 11, 12])
        game.seed(seed)
        game.reset()
        for i in range(300):
            game.step(i % 6)
        screens.append(game.screen.copy())
    assert not np.array_equal(*screens)
