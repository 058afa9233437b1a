"""A batch of Atari games for training, built from the device's own loop.

Each game is a `device.atari.AtariGame`, the loop the board runs, so what
training plays is what the device plays by construction (and that loop is
tested bit-identical to TorchRL's GymEnv). Observations go through the same
TorchRL `preprocess()` transforms and the same `FrameStack` module that the
exported graph contains: the stack training sees is the graph's
`next_frames` output.
"""

from __future__ import annotations

from typing import Any

import ale_py
import numpy as np
import torch
from tensordict import TensorDict

from device.atari import AtariGame
from device.manifest import EnvSpec
from host.envs import OBS_KEY, SCREEN_KEY, action_table, make_base_env, preprocess
from host.policies import FrameStack


class GameBatch:
    """N games stepped together; returns stacked, preprocessed observations."""

    def __init__(self, spec: EnvSpec, n: int, seed: int, stack: int = 4) -> None:
        ids, _ = action_table(make_base_env(spec))
        self.spec, self.n, self.stack_len = spec, n, stack
        self.n_actions = len(ids)
        self.games = [AtariGame(spec, ids) for _ in range(n)]
        for i, game in enumerate(self.games):
            game.seed(seed * 1000 + i)
            game.reset()
        self._pre = preprocess()
        self._shift = FrameStack()
        self.pixels = np.stack([g.screen for g in self.games])
        self.frames = torch.zeros(n, stack, 84, 84)
        self.returns = np.zeros(n)
        self.lengths = np.zeros(n, dtype=np.int64)
        self.frames = self._observe(torch.ones(n, dtype=torch.bool))

    def _observe(self, reset: torch.Tensor) -> torch.Tensor:
        """Next stack from the current screens; zeroed first where an episode starts."""
        obs = self._pre(TensorDict({SCREEN_KEY: torch.from_numpy(self.pixels)}, batch_size=[self.n]))[OBS_KEY]
        prev = torch.where(reset.view(-1, 1, 1, 1), torch.zeros_like(self.frames), self.frames)
        return self._shift(prev, obs)

    def step(self, actions: np.ndarray) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray, list[tuple]]:
        """Act in every game; returns (obs stacks, rewards, dones, terminated, finished (return, length))."""
        rewards = np.zeros(self.n, dtype=np.float32)
        dones = np.zeros(self.n, dtype=bool)
        terms = np.zeros(self.n, dtype=bool)
        finished = []
        for i, (game, a) in enumerate(zip(self.games, actions, strict=True)):
            result = game.step(int(a))
            rewards[i] = result.reward
            self.returns[i] += result.reward
            self.lengths[i] += 1
            if result.done:
                dones[i], terms[i] = True, result.terminated
                finished.append((float(self.returns[i]), int(self.lengths[i])))
                self.returns[i], self.lengths[i] = 0.0, 0
                game.reset()
            self.pixels[i] = game.screen
        self.frames = self._observe(torch.from_numpy(dones))
        return self.frames, rewards, dones, terms, finished

    def pin_sticky_action(self) -> None:
        """Make every game's hidden 'previous action' NOOP without changing its state or RNG.

        With sticky actions the ALE repeats the previously applied action, and
        that action is not part of cloneState: a restored game would repeat
        whatever its new process last played. Training calls this at fixed
        boundaries (uninterrupted or resumed alike) and checkpoints only
        there, so a resumed run continues bit for bit. Acting NOOP 40 times
        leaves another previous action with probability 0.25**40.
        """
        if not self.spec.repeat_action_probability:
            return
        for game in self.games:
            state = game.ale.cloneState(include_rng=True)
            for _ in range(40):
                game.ale.act(ale_py.Action.NOOP)
            game.ale.restoreState(state)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: emulator states (with RNG), stacks, running returns."""
        states = [g.ale.cloneState(include_rng=True).__getstate__() for g in self.games]
        return {
            "ale": [torch.frombuffer(bytearray(s), dtype=torch.uint8) for s in states],
            "frames": self.frames.clone(),
            "pixels": torch.from_numpy(self.pixels.copy()),
            "returns": torch.from_numpy(self.returns.copy()),
            "lengths": torch.from_numpy(self.lengths.copy()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict saved."""
        for game, raw in zip(self.games, state["ale"], strict=True):
            ale_state = ale_py.ALEState.__new__(ale_py.ALEState)
            ale_state.__setstate__(bytes(raw.numpy().tobytes()))
            game.ale.restoreState(ale_state)
        self.frames = state["frames"].clone()
        self.pixels = state["pixels"].numpy().copy()
        self.returns = state["returns"].numpy().copy()
        self.lengths = state["lengths"].numpy().copy()
