"""The board's Atari loop: ale_py.ALEInterface driven directly, with the training env's semantics.

It reproduces what training saw, bit for bit, for the ALE v5 semantics the
host env uses (TorchRL's GymEnv over ale-py's AtariEnv):

- settings are applied in AtariEnv's order: sticky-action probability,
  episode frame limit, then the seed, then the ROM is loaded;
- `seed(s)` derives the ALE seed as AtariEnv.seed_game does (numpy
  SeedSequence, second word) and resets once, as TorchRL's `set_seed` does;
- each agent step repeats the ALE action `frame_skip` times and sums rewards;
- the policy's output index is mapped through the manifest's action table
  (the minimal action set), never passed straight to `ale.act`.

Max-pooling, no-op starts and life-loss episodes are implemented here for
bundles that declare them; the host env refuses them until it does too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.manifest import SCREEN_SHAPE, EdgerlError, EnvSpec


class GameError(EdgerlError):
    """The emulator or its ROM cannot be set up as the bundle asks."""


@dataclass
class StepResult:
    """What one agent step did."""

    reward: float
    terminated: bool
    truncated: bool

    @property
    def done(self) -> bool:
        """The episode is over (game over, life lost if declared, or truncated)."""
        return self.terminated or self.truncated


def rom_path(game: str) -> str:
    """The ROM shipped in the ale-py wheel; a clear error when it is missing."""
    try:
        from ale_py import roms
    except ImportError as err:  # pragma: no cover - ale_py is a core dependency
        raise GameError("ale-py is not installed; pip install ale-py") from err
    try:
        path = roms.get_rom_path(game)
    except Exception as err:  # ale-py raises a bare error type that varies by version
        raise GameError(f"no ROM for game {game!r} in ale-py: {err}; install an ale-py that ships it") from err
    if path is None:
        raise GameError(f"no ROM for game {game!r} in this ale-py; install an ale-py that ships it")
    return str(path)


class AtariGame:
    """One ALE instance playing the bundle's game with the bundle's semantics."""

    def __init__(self, spec: EnvSpec, action_ids: list[int], rom: str | None = None, seed: int | None = None
                 ) -> None:
        """Set up the emulator; with `seed`, seeded as `seed(seed)` would, loading the ROM once instead of twice."""
        import ale_py

        if not isinstance(spec.frame_skip, int) or spec.frame_skip < 1:
            raise GameError(f"frame_skip must be a positive integer, not {spec.frame_skip!r}; re-export the bundle")
        self.spec = spec
        self._rom = rom or rom_path(spec.game)
        self.ale = ale_py.ALEInterface()
        self.ale.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale.setFloat("repeat_action_probability", float(spec.repeat_action_probability))
        self.ale.setInt("max_num_frames_per_episode", int(spec.max_num_frames_per_episode))
        self._load(seed)
        legal = {int(a.value) for a in self.ale.getLegalActionSet()}
        bad = [a for a in action_ids if a not in legal]
        if bad:
            raise GameError(f"action ids {bad} are not legal ALE actions for {spec.game}; the bundle is wrong")
        self._actions = [ale_py.Action(a) for a in action_ids]
        self.n_actions = len(self._actions)
        # Preallocated screen buffers: the ALE writes into them, no per-step allocation.
        self.screen = np.zeros(SCREEN_SHAPE, dtype=np.uint8)
        self._prev = np.zeros(SCREEN_SHAPE, dtype=np.uint8)
        self._noop_rng = np.random.default_rng(0 if seed is None else self._noop_seed)
        self._lives = 0
        if seed is not None:
            self.ale.reset_game()

    def _load(self, seed: int | None) -> None:
        ss = np.random.SeedSequence(seed)
        np_seed, ale_seed = ss.generate_state(n_words=2)
        self._load_raw(int(np.int32(ale_seed)))
        self._noop_seed = int(np_seed)

    def _load_raw(self, ale_seed: int) -> None:
        self.ale.setInt("random_seed", ale_seed)
        try:
            self.ale.loadROM(self._rom)
        except Exception as err:
            raise GameError(f"cannot load ROM {self._rom}: {err}") from err

    def seed(self, seed: int) -> None:
        """Seed the emulator as TorchRL's set_seed does (seed, reload the ROM, reset once)."""
        self._load(seed)
        self._noop_rng = np.random.default_rng(self._noop_seed)
        self.ale.reset_game()

    def seed_ale(self, ale_seed: int) -> None:
        """Seed the emulator with a raw ALE seed, as ale-py's AtariVectorEnv does (the PQN trainer's games)."""
        self._load_raw(int(ale_seed))
        self.ale.reset_game()

    def reset(self) -> np.ndarray:
        """Start an episode; returns the preallocated screen buffer."""
        self.ale.reset_game()
        if self.spec.noop_max:
            noop = self._actions[0]
            for _ in range(int(self._noop_rng.integers(1, self.spec.noop_max + 1))):
                self.ale.act(noop)
                if self.ale.game_over():
                    self.ale.reset_game()
        self._lives = self.ale.lives()
        self.ale.getScreenRGB(self.screen)
        return self.screen

    def step(self, index: int) -> StepResult:
        """Play one agent step with the policy's action index; the screen buffer is updated."""
        if not 0 <= index < self.n_actions:
            raise GameError(
                f"policy chose action index {index}, outside 0..{self.n_actions - 1}; "
                "the model does not match the manifest's action table"
            )
        action = self._actions[index]
        reward = 0.0
        skip = self.spec.frame_skip
        for frame in range(skip):
            if self.spec.max_pool and frame == skip - 1:
                self.ale.getScreenRGB(self._prev)
            reward += self.ale.act(action)
        self.ale.getScreenRGB(self.screen)
        if self.spec.max_pool and skip > 1:
            np.maximum(self.screen, self._prev, out=self.screen)
        terminated = self.ale.game_over(with_truncation=False)
        truncated = self.ale.game_truncated()
        if self.spec.terminal_on_life_loss:
            lives = self.ale.lives()
            terminated = terminated or lives < self._lives
            self._lives = lives
        return StepResult(reward, bool(terminated), bool(truncated))
