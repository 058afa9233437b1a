"""Where PPO training time goes: collection vs learning, for a few real iterations, one run.

    python bench/train_speed.py [--iterations 3] [--threads 2]

Runs edgerl's PPO (8 games x 128 steps per iteration, 4 epochs x 4 minibatches)
in a temporary folder and prints frames/s and the collection/learning split.
"""

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from host.ppo import PPOConfig, train_ppo  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = PPOConfig(out=Path(tmp) / "run", frames=8 * 128 * 4 * args.iterations, threads=args.threads)
        t0 = time.perf_counter()
        train_ppo(cfg, progress=False)
        wall = time.perf_counter() - t0
        scalars = Path(tmp) / "run" / "logs" / "train" / "scalars"

        def column(name: str) -> list[float]:
            with open(scalars / f"{name}.csv") as fh:
                return [float(r[1]) for r in csv.reader(fh) if r]

        collect, learn = column("collect_s"), column("learn_s")
    per_iter = 8 * 128 * 4
    # The first iteration pays one-off start-up costs; report the steady ones.
    c, lrn = sum(collect[1:]) / max(len(collect) - 1, 1), sum(learn[1:]) / max(len(learn) - 1, 1)
    print(f"{args.iterations} iterations in {wall:.1f} s (incl. start-up); steady state per {per_iter} frames: "
          f"collect {c:.2f} s + learn {lrn:.2f} s = {per_iter / (c + lrn):.0f} frames/s; "
          f"collection {c / (c + lrn):.0%}, learning {lrn / (c + lrn):.0%}; torch threads {args.threads}")


if __name__ == "__main__":
    main()
