"""ale-py's native vector env (C++ threads) as the PQN trainer's games, with the device loop's semantics.

`AtariVectorEnv` steps the emulators in C++ and restarts finished games
itself (`bench/collection.py` times it beside N device loops in one
process: 1.07x on one thread, frames and stacks included). It is set up to play
exactly what `device.atari.AtariGame` plays: full RGB screens (no ALE
resize, grayscale, max-pool, no-op starts or fire reset), the spec's frame
skip and sticky actions inside ALE, unclipped rewards. Every episode is
seeded on its own (raw ALE seed, see `episode_seed`), so each training
episode is bit-identical to the device loop seeded with `AtariGame.seed_ale`
and fed the same actions (tested). Without that reseed the sticky-action
RNG streams part after the first game over: the vector env stops a frame
skip at game over, the device loop (like gymnasium's AtariEnv) plays it out.

Screens become the graph's observation with the graph's own transforms:
the rows and columns its nearest-neighbour resize keeps are read off
`preprocess()` itself, then `preprocess()` runs on the 84x84 crop (the
resize is then the identity), so training sees the exported graph's values
bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict

from device.manifest import FRAME_SHAPE, SCREEN_SHAPE, STACK_DEPTH, EnvSpec
from host.envs import OBS_KEY, SCREEN_KEY, UnsupportedEnvError, preprocess
from host.frame_stack import StackFrames


def episode_seed(run_seed: int, env: int, episode: int) -> int:
    """The raw ALE seed of one game: distinct per run, env slot and episode; non-negative (ALE ignores others)."""
    return int(np.random.SeedSequence([run_seed, env, episode]).generate_state(1)[0] & 0x7FFFFFFF)


def nearest_rows_cols() -> tuple[np.ndarray, np.ndarray]:
    """Screen rows and columns the graph's nearest-neighbour resize keeps, read off the transform itself.

    A probe screen whose every channel holds the row (then column) index goes
    through `preprocess()`; grey = 0.9999 * index / 255, so rounding
    recovers which source pixel each output pixel came from.
    """
    pre = preprocess()
    picked = []
    for axis in (0, 1):
        probe = np.zeros(SCREEN_SHAPE, dtype=np.uint8)
        index = np.arange(SCREEN_SHAPE[axis], dtype=np.uint8)
        probe[...] = (index[:, None, None] if axis == 0 else index[None, :, None])
        grey = pre(TensorDict({SCREEN_KEY: torch.from_numpy(probe)}, batch_size=[]))[OBS_KEY][0]
        line = grey[:, 0] if axis == 0 else grey[0, :]
        picked.append((line * 255 / 0.9999).round().long().numpy())
    return picked[0], picked[1]


def check_spec(spec: EnvSpec) -> None:
    """Refuse, in one line, the semantics these games do not reproduce the device loop's way."""
    unsupported = [k for k in ("max_pool", "noop_max", "terminal_on_life_loss") if getattr(spec, k)]
    if unsupported:
        raise UnsupportedEnvError(f"the pqn trainer does not implement {', '.join(unsupported)}; "
                                  "train with frame skip and sticky actions only (ALE v5)")


class Frames84:
    """Full RGB screens [N, 210, 160, 3] -> the exported graph's preprocessed frames [N, 1, 84, 84], exactly."""

    def __init__(self) -> None:
        self._rows, self._cols = nearest_rows_cols()
        self._pre = preprocess()

    def __call__(self, screens: np.ndarray) -> torch.Tensor:
        """Crop to the rows and columns the graph's resize keeps, then run the graph's own transforms."""
        crop = np.ascontiguousarray(screens[:, self._rows][:, :, self._cols])
        return self._pre(TensorDict({SCREEN_KEY: torch.from_numpy(crop)}, batch_size=[len(crop)]))[OBS_KEY]


class VectorGames:
    """N games in ale-py's vector env; `screens` are their current RGB screens, `stack` their frame stacks."""

    def __init__(self, spec: EnvSpec, n: int, seed: int, episodes: np.ndarray | None = None,
                 depth: int = STACK_DEPTH) -> None:
        from ale_py.vector_env import AtariVectorEnv

        check_spec(spec)
        self.spec, self.n, self.seed = spec, n, seed
        self.env = AtariVectorEnv(
            spec.game, n, num_threads=1, autoreset_mode="SameStep",
            img_height=SCREEN_SHAPE[0], img_width=SCREEN_SHAPE[1], grayscale=False, stack_num=1,
            frameskip=spec.frame_skip, maxpool=False, noop_max=0, use_fire_reset=False, reward_clipping=False,
            episodic_life=False, repeat_action_probability=spec.repeat_action_probability,
            full_action_space=spec.full_action_space, max_num_frames_per_episode=spec.max_num_frames_per_episode,
        )
        self.n_actions = int(self.env.single_action_space.n)
        self.episodes = np.zeros(n, dtype=np.int64) if episodes is None else np.asarray(episodes, np.int64).copy()
        self.returns = np.zeros(n)
        self.lengths = np.zeros(n, dtype=np.int64)
        self.frames84 = Frames84()
        self.push = StackFrames(depth)
        every = np.ones(n, dtype=bool)
        screens, info = self.env.reset(seed=self._seeds(every))
        self.screens = self._ordered(screens, info)[:, 0]
        self.stack = torch.zeros(n, depth, *FRAME_SHAPE)
        self.stack = self.push(self.stack, self.frames84(self.screens), torch.from_numpy(every))

    def _seeds(self, which: np.ndarray) -> np.ndarray:
        return np.array([episode_seed(self.seed, i, int(self.episodes[i])) for i in np.flatnonzero(which)])

    @staticmethod
    def _ordered(screens: np.ndarray, info: dict) -> np.ndarray:
        ids = info["env_id"]
        return screens if np.all(ids[:-1] <= ids[1:]) else screens[np.argsort(ids)]

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[float, int]]]:
        """Act in every game; returns (rewards, dones, finished (return, length)); finished games restart seeded."""
        screens, rewards, terms, truncs, info = self.env.step(np.asarray(actions, dtype=np.int64))
        order = np.argsort(info["env_id"])
        screens, rewards, dones = screens[order], rewards[order].astype(np.float32), (terms | truncs)[order]
        self.returns += rewards
        self.lengths += 1
        finished = []
        if dones.any():
            for i in np.flatnonzero(dones):
                finished.append((float(self.returns[i]), int(self.lengths[i])))
            self.returns[dones], self.lengths[dones] = 0.0, 0
            self.episodes[dones] += 1
            # The vector env has already restarted these games unseeded; restart them seeded instead.
            screens, info = self.env.reset(seed=self._seeds(dones), options={"reset_mask": dones})
            screens = self._ordered(screens, info)
        self.screens = screens[:, 0]
        self.stack = self.push(self.stack, self.frames84(self.screens), torch.from_numpy(dones))
        return rewards, dones, finished

    def close(self) -> None:
        """Stop the emulator threads."""
        self.env.close()
