"""Device loop vs TorchRL env.rollout, same policy, same frame skip, one process, ratio printed.

    python bench/loop_vs_rollout.py [--steps 3000] [--policy dqn]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _bundles import bundle  # noqa: E402
from torchrl.envs.utils import ExplorationType, set_exploration_type  # noqa: E402

from device.atari import AtariGame  # noqa: E402
from device.manifest import load_bundle  # noqa: E402
from device.policy import Policy  # noqa: E402
from host.bundle.sources import builtin_source  # noqa: E402


def rollout_steps_per_s(path: Path, steps: int) -> float:
    manifest = load_bundle(path)
    # The bundle was exported from this very source (same kind, seed 0): same weights, same env.
    src = builtin_source(manifest.policy_kind, manifest.env, seed=0)
    actor, env = src.policy, src.env
    env.set_seed(0)
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        env.rollout(50, actor, break_when_any_done=False)
        t0 = time.perf_counter()
        env.rollout(steps, actor, break_when_any_done=False)
        return steps / (time.perf_counter() - t0)


def device_steps_per_s(path: Path, steps: int) -> float:
    manifest = load_bundle(path)
    policy = Policy(path, manifest)
    game = AtariGame(manifest.env, manifest.action_ids)
    game.seed(0)
    screen = game.reset()
    for _ in range(50):
        policy.act(screen)
    t0 = time.perf_counter()
    for _ in range(steps):
        if game.step(policy.act(screen)).done:
            game.reset()
            policy.reset()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--policy", default="dqn", choices=["dqn", "stacked", "lstm"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    path = bundle(args.policy)
    ratios = []
    for r in range(args.rounds):
        torchrl = rollout_steps_per_s(path, args.steps)
        dev = device_steps_per_s(path, args.steps)
        ratios.append(dev / torchrl)
        print(f"round {r}: TorchRL env.rollout {torchrl:7.0f} steps/s | device loop {dev:7.0f} steps/s | "
              f"ratio {dev / torchrl:.2f}x")
    ratios.sort()
    print(f"policy {args.policy}, frame skip {load_bundle(path).env.frame_skip}, torch threads "
          f"{torch.get_num_threads()}, onnxruntime threads 1: median ratio {ratios[len(ratios) // 2]:.2f}x")


if __name__ == "__main__":
    main()
