"""Old trainer vs new: PPO (Python games, 2 torch threads) against PQN (ale-py vector env, collector and learner
overlapped on one core each) at its default 4 epochs and at 2, alternated in one run (order flipped each round)
so all see the same load.

    python bench/train_speed.py [--rounds 4] [--ppo-iterations 4] [--pqn-iterations 12] [--busy N]

--busy N keeps N other processes spinning on the CPU meanwhile: a machine that also runs something else, where
a trainer on two torch threads stalls on whichever thread is preempted.

Prints each trainer's steady-state frames/s (median wall time per iteration, the first iteration dropped: it
pays start-up costs) and the ratio new/old. Both run their `edgerl train` defaults except the budget.
"""

import argparse
import contextlib
import csv
import multiprocessing as mp
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


def spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def busy(processes: int):
    """`processes` CPU-bound processes for the duration of the block."""
    spinners = [mp.get_context("spawn").Process(target=spin, daemon=True) for _ in range(processes)]
    for p in spinners:
        p.start()
    try:
        yield
    finally:
        for p in spinners:
            p.terminate()
            p.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--ppo-iterations", type=int, default=4)
    parser.add_argument("--pqn-iterations", type=int, default=12)
    parser.add_argument("--busy", type=int, default=0, help="other CPU-bound processes running meanwhile")
    args = parser.parse_args()
    old, new, light = [], [], []
    runs = [(old, lambda: ppo_rate(args.ppo_iterations)),
            (new, lambda: pqn_rate(args.pqn_iterations, PQNConfig().epochs)),
            (light, lambda: pqn_rate(args.pqn_iterations, 2))]
    for r in range(args.rounds):
        # The order flips every round: whatever runs right after another trainer pays nothing extra on average.
        for rates, rate in runs if r % 2 == 0 else runs[::-1]:
            with busy(args.busy):
                rates.append(rate())
        print(f"round {r + 1}: ppo {old[-1]:.0f} frames/s, pqn {new[-1]:.0f}, pqn at 2 epochs {light[-1]:.0f}",
              flush=True)
    o, n, li = statistics.median(old), statistics.median(new), statistics.median(light)
    print(f"old trainer (ppo): {o:.0f} frames/s; new trainer (pqn, {PQNConfig().epochs} epochs, the default): "
          f"{n:.0f} frames/s, {n / o:.2f}x; pqn at 2 epochs: {li:.0f} frames/s, {li / o:.2f}x "
          f"(medians of {args.rounds} rounds{f', {args.busy} busy processes beside' if args.busy else ''})")


if __name__ == "__main__":
    main()
