"""Collection throughput for training: the candidates side by side in one run, ratios printed.

    python bench/collection.py [--envs 8] [--steps 400]

Each collects with random actions and turns screens into the policy's input
(preprocess + frame stack where the candidate does not do it itself):
- GameBatch: N device loops (device.atari) in this process; what edgerl trains with.
- ale-py AtariVectorEnv (native threads), configured to v5 semantics with raw RGB output.
- TorchRL SerialEnv and ParallelEnv of GymEnv with the preprocessing transforms.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from torchrl.envs import ParallelEnv, SerialEnv  # noqa: E402

from device.manifest import EnvSpec  # noqa: E402
from host.envs import OBS_KEY, SCREEN_KEY, make_env, preprocess  # noqa: E402
from host.vecenv import GameBatch  # noqa: E402


def game_batch(n: int, steps: int) -> float:
    batch = GameBatch(EnvSpec(), n, seed=0)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        batch.step(rng.integers(0, 6, n))
    return n * steps / (time.perf_counter() - t0)


def ale_vector(n: int, steps: int) -> float:
    from ale_py.vector_env import AtariVectorEnv

    env = AtariVectorEnv("pong", n, num_threads=2, img_height=210, img_width=160, grayscale=False, stack_num=1,
                         frameskip=4, maxpool=False, noop_max=0, reward_clipping=False, use_fire_reset=False,
                         repeat_action_probability=0.25, episodic_life=False)
    pre = preprocess()
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, *_ = env.step(rng.integers(0, 6, n))
        screens = torch.from_numpy(np.ascontiguousarray(obs.reshape(n, 210, 160, 3)))
        pre(TensorDict({SCREEN_KEY: screens}, batch_size=[n]))[OBS_KEY]
    rate = n * steps / (time.perf_counter() - t0)
    env.close()
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
        "GameBatch (device loops, in process)": game_batch(args.envs, args.steps),
        "ale-py AtariVectorEnv (2 threads)": ale_vector(args.envs, args.steps),
        "TorchRL SerialEnv(GymEnv)": torchrl_env(SerialEnv, args.envs, args.steps),
        "TorchRL ParallelEnv(GymEnv)": torchrl_env(ParallelEnv, args.envs, args.steps),
    }
    base = rates["GameBatch (device loops, in process)"]
    for name, rate in rates.items():
        print(f"{name:<40} {rate:8.0f} agent steps/s ({rate * 4:7.0f} frames/s)  {rate / base:5.2f}x GameBatch")


if __name__ == "__main__":
    main()
