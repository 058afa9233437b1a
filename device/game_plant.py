"""The bundle's own game as `serve`'s plant: observe the screen, apply the action, restart at episode end."""

from __future__ import annotations

from typing import Any

import numpy as np

from device.atari import AtariGame
from device.manifest import Manifest
from device.play import game_decision

SCORES_KEPT = 20
"""The last episodes' scores the status file shows."""


class GamePlant:
    """The bundle's own game as the plant: observe the screen, apply the action, restart at episode end."""

    def __init__(self, manifest: Manifest, seed: int) -> None:
        self.game = AtariGame(manifest.env, manifest.action_ids, seed=seed)
        self.last: dict[str, Any] | None = None
        """The last step as a recording has it (set only while recording: its CRC costs a few µs)."""
        self.recording = False
        self.screen = self.game.reset()
        self.score = 0.0
        self.scores: list[float] = []
        self.episodes = 0

    def observe(self) -> np.ndarray:
        """The current screen."""
        return self.screen

    def apply(self, action: int) -> bool:
        """One agent step; True when the episode ended (the game is reset)."""
        result = self.game.step(action)
        self.score += result.reward
        if self.recording:
            self.last = game_decision(self.episodes, action, result.reward, result.terminated, result.truncated,
                                      self.game.screen)
        if not result.done:
            return False
        self.episodes += 1
        self.scores = (self.scores + [self.score])[-SCORES_KEPT:]
        self.score = 0.0
        self.screen = self.game.reset()
        return True
