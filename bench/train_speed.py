"""Old trainer vs new: PPO (Python games, 2 torch threads) against PQN (ale-py vector env, collector and learner
overlapped on one core each) at its default 4 epochs and at 2, alternated in one run so all see the same load.

    python bench/train_speed.py [--rounds 2] [--ppo-iterations 4] [--pqn-iterations 12]

Prints each trainer's steady-state frames/s (median wall time per iteration, the first iteration dropped: it
pays start-up costs) and the ratio new/old. Both run their `edgerl train` defaults except the budget.
"""

import argparse
import csv
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from host.ppo import PPOConfig, train_ppo  # noqa: E402
from host.pqn import PQNConfig, train_pqn  # noqa: E402


def column(run: Path, name: str) -> list[float]:
    with open(run / "logs" / "train" / "scalars" / f"{name}.csv") as fh:
        return [float(r[1]) for r in csv.reader(fh) if r]


def ppo_rate(iterations: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = PPOConfig(out=Path(tmp) / "run", frames=8 * 128 * 4 * iterations)
        train_ppo(cfg, progress=False)
        per_iter = [c + lrn for c, lrn in zip(column(cfg.out, "collect_s"), column(cfg.out, "learn_s"), strict=True)]
        return 8 * 128 * 4 / statistics.median(per_iter[1:])


def pqn_rate(iterations: int, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        per_iter = PQNConfig().frames_per_rollout
        cfg = PQNConfig(out=Path(tmp) / "run", frames=per_iter * iterations, eval_every=10**12, epochs=epochs)
        train_pqn(cfg, progress=False)
        return cfg.frames_per_rollout / statistics.median(column(cfg.out, "iteration_s")[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ppo-iterations", type=int, default=4)
    parser.add_argument("--pqn-iterations", type=int, default=12)
    args = parser.parse_args()
    old, new, light = [], [], []
    for r in range(args.rounds):
        old.append(ppo_rate(args.ppo_iterations))
        new.append(pqn_rate(args.pqn_iterations, PQNConfig().epochs))
        light.append(pqn_rate(args.pqn_iterations, 2))
        print(f"round {r + 1}: ppo {old[-1]:.0f} frames/s, pqn {new[-1]:.0f}, pqn at 2 epochs {light[-1]:.0f}",
              flush=True)
    o, n, li = statistics.median(old), statistics.median(new), statistics.median(light)
    print(f"old trainer (ppo): {o:.0f} frames/s; new trainer (pqn, {PQNConfig().epochs} epochs, the default): "
          f"{n:.0f} frames/s, {n / o:.2f}x; pqn at 2 epochs: {li:.0f} frames/s, {li / o:.2f}x "
          f"(medians of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
