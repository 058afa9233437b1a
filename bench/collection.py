"""Collection throughput for training: the candidates side by side in one run, ratios printed.

    python bench/collection.py [--envs 8] [--steps 400]

Each collects with random actions and turns screens into the network's input
(84x84 frames, stacked by 4):
- the baseline, held here: N device loops (`device.atari.AtariGame`) stepped in turn in this process;
- `host.train.vector_games.VectorGames`: ale-py's AtariVectorEnv (C++), what the PQN trainer collects with;
- TorchRL SerialEnv and ParallelEnv of GymEnv with the preprocessing transforms (no stack).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchrl.envs import ParallelEnv, SerialEnv  # noqa: E402

from device.atari import AtariGame  # noqa: E402
from device.manifest import FRAME_SHAPE, STACK_DEPTH, EnvSpec  # noqa: E402
from host.envs import action_table, make_base_env, make_env  # noqa: E402
from host.frame_stack import StackFrames  # noqa: E402
from host.train.vector_games import Frames84, VectorGames  # noqa: E402


def device_loops(n: int, steps: int) -> float:
    spec = EnvSpec()
    ids, _ = action_table(make_base_env(spec))
    games = [AtariGame(spec, ids) for _ in range(n)]
    for i, game in enumerate(games):
        game.seed(i)
        game.reset()
    frames84, push = Frames84(), StackFrames(STACK_DEPTH)
    stack = torch.zeros(n, STACK_DEPTH, *FRAME_SHAPE)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        done = torch.zeros(n, dtype=torch.bool)
        for i, (game, action) in enumerate(zip(games, rng.integers(0, len(ids), n), strict=True)):
            if game.step(int(action)).done:
                game.reset()
                done[i] = True
        stack = push(stack, frames84(np.stack([g.screen for g in games])), done)
    return n * steps / (time.perf_counter() - t0)


def vector_games(n: int, steps: int) -> float:
    games = VectorGames(EnvSpec(), n, seed=0)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        games.step(rng.integers(0, games.n_actions, n))
    rate = n * steps / (time.perf_counter() - t0)
    games.close()
    return rate


def torchrl_env(kind: type, n: int, steps: int) -> float:
    env = kind(n, lambda: make_env(EnvSpec()))
    env.set_seed(0)
    env.reset()
    t0 = time.perf_counter()
    env.rollout(steps, break_when_any_done=False)
    rate = n * steps / (time.perf_counter() - t0)
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    rates = {
        "device loops, in process (baseline)": device_loops(args.envs, args.steps),
        "VectorGames (AtariVectorEnv, 1 thread)": vector_games(args.envs, args.steps),
        "TorchRL SerialEnv(GymEnv)": torchrl_env(SerialEnv, args.envs, args.steps),
        "TorchRL ParallelEnv(GymEnv)": torchrl_env(ParallelEnv, args.envs, args.steps),
    }
    base = rates["device loops, in process (baseline)"]
    for name, rate in rates.items():
        print(f"{name:<40} {rate:8.0f} agent steps/s ({rate * 4:7.0f} frames/s)  {rate / base:5.2f}x the baseline")


if __name__ == "__main__":
    main()
