"""Raw screens from real play (random, or the bundle's own policy), for verification and int8 calibration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDictBase

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


def _in_segments(count: int, segment: int, reset: Callable[[], np.ndarray],
                 step: Callable[[np.ndarray], np.ndarray | None]) -> ScreenSet:
    """`count` screens of play that restarts every `segment` steps and whenever `step` says the episode ended."""
    screens = np.empty((count, *SCREEN_SHAPE), dtype=np.uint8)
    starts = np.zeros(count, dtype=bool)
    screen = None
    for i in range(count):
        if i % segment == 0 or screen is None:
            screen = reset()
            starts[i] = True
        screens[i] = screen
        screen = step(screen)
    return ScreenSet(screens, starts)


def collect_screens(spec: EnvSpec, count: int, seed: int = 0, segment: int = 250) -> ScreenSet:
    """Play seeded random actions in the host env and keep the screens, in segments that each start an episode.

    Segments make stateful policies cross several episode starts in one
    sequence, so state resets are exercised, not just one long episode.
    """
    env = make_base_env(spec)
    env.set_seed(seed)
    rng = np.random.default_rng(seed)
    n_actions = env.action_spec.space.n
    td: TensorDictBase | None = None

    def reset() -> np.ndarray:
        nonlocal td
        td = env.reset()
        return td[SCREEN_KEY].numpy()

    def step(_: np.ndarray) -> np.ndarray | None:
        nonlocal td
        assert td is not None  # reset() came first
        td["action"] = torch.tensor(int(rng.integers(n_actions)))
        td = env.step(td)["next"]
        return None if td["done"].item() else td[SCREEN_KEY].numpy()

    played = _in_segments(count, segment, reset, step)
    env.close()
    return played


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

    def reset() -> np.ndarray:
        policy.reset()
        return game.reset()

    def step(screen: np.ndarray) -> np.ndarray | None:
        action = policy.act(screen)
        if rng.random() < explore:
            action = int(rng.integers(len(manifest.action_ids)))
        return None if game.step(action).done else game.screen

    return _in_segments(count, segment, reset, step)
