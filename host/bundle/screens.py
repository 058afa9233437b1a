"""Raw screens from real play (random, or the bundle's own policy), for verification and int8 calibration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from device.atari import AtariGame
from device.manifest import SCREEN_SHAPE, EnvSpec
from device.policy import Policy
from host.envs import SCREEN_KEY, make_base_env


@dataclass
class ScreenSet:
    """Raw screens [N, 210, 160, 3] in play order; `starts[i]` marks the first screen of an episode segment."""

    screens: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        """Number of screens."""
        return len(self.screens)


def collect_screens(spec: EnvSpec, count: int, seed: int = 0, segment: int = 250) -> ScreenSet:
    """Play seeded random actions and keep the screens, in segments that each start an episode.

    Segments make stateful policies cross several episode starts in one
    sequence, so state resets are exercised, not just one long episode.
    """
    env = make_base_env(spec)
    env.set_seed(seed)
    rng = np.random.default_rng(seed)
    n_actions = env.action_spec.space.n
    screens = np.empty((count, *SCREEN_SHAPE), dtype=np.uint8)
    starts = np.zeros(count, dtype=bool)
    td = None
    for i in range(count):
        if i % segment == 0 or td is None:
            td = env.reset()
            starts[i] = True
        screens[i] = td[SCREEN_KEY].numpy()
        td["action"] = torch.tensor(int(rng.integers(n_actions)))
        td = env.step(td)["next"]
        if td["done"].item():
            td = None
    env.close()
    return ScreenSet(screens, starts)


def policy_screens(bundle: Path, count: int, seed: int = 0, segment: int = 250, explore: float = 0.05
                   ) -> ScreenSet:
    """Screens of the bundle's own fp32 policy playing its game on the device loop, in episode segments.

    What an int8 model must get right are the states the policy visits: a
    winning Pong policy sees long rallies that random play never reaches,
    and calibrated on random play its int8 model lost every game. `explore`
    of the steps take a random action, so nearby states are covered too.
    """
    policy = Policy.load(bundle, threads=1)
    manifest = policy.manifest
    game = AtariGame(manifest.env, manifest.action_ids)
    game.seed(seed)
    rng = np.random.default_rng(seed)
    screens = np.empty((count, *SCREEN_SHAPE), dtype=np.uint8)
    starts = np.zeros(count, dtype=bool)
    screen = None
    for i in range(count):
        if i % segment == 0 or screen is None:
            screen = game.reset()
            policy.reset()
            starts[i] = True
        screens[i] = screen
        action = policy.act(screen)
        if rng.random() < explore:
            action = int(rng.integers(len(manifest.action_ids)))
        result = game.step(action)
        screen = None if result.done else game.screen
    return ScreenSet(screens, starts)
