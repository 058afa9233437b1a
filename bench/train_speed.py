"""Where PPO training time goes, and what bf16 buys: fp32 and bf16 trunks side by side in one run.

    python bench/train_speed.py [--iterations 4] [--rounds 2] [--threads 2]

Runs edgerl's PPO (8 games x 128 steps per iteration, 4 epochs x 4
minibatches) in a temporary folder, alternating an fp32 and a bf16 trunk for
a few rounds so both see the same machine load, and prints per precision the
collection/learning split, frames/s, and the bf16 speed-up.
"""

import argparse
import csv
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from host.ppo import PPOConfig, native_bf16, train_ppo  # noqa: E402

PER_ITER = 8 * 128 * 4


def one_run(bf16: bool, iterations: int, threads: int) -> tuple[list[float], list[float]]:
    """Collection and learning seconds of each steady-state iteration."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = PPOConfig(out=Path(tmp) / "run", frames=PER_ITER * iterations, threads=threads, bf16=bf16)
        train_ppo(cfg, progress=False)
        scalars = Path(tmp) / "run" / "logs" / "train" / "scalars"

        def column(name: str) -> list[float]:
            with open(scalars / f"{name}.csv") as fh:
                return [float(r[1]) for r in csv.reader(fh) if r]

        # The first iteration pays one-off start-up costs; keep the steady ones.
        return column("collect_s")[1:], column("learn_s")[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not native_bf16():
        print("this CPU has no native bf16 (avx512_bf16/AMX): training defaults to fp32 here")
    times: dict[bool, tuple[list[float], list[float]]] = {False: ([], []), True: ([], [])}
    for _ in range(args.rounds):
        for bf16 in (False, True):
            collect, learn = one_run(bf16, args.iterations, args.threads)
            times[bf16][0].extend(collect)
            times[bf16][1].extend(learn)
    rate = {}
    for bf16, (collect, learn) in times.items():
        c, lrn = statistics.median(collect), statistics.median(learn)
        rate[bf16] = PER_ITER / (c + lrn)
        print(f"{'bf16' if bf16 else 'fp32'} trunk: per {PER_ITER} frames collect {c:.2f} s + learn {lrn:.2f} s "
              f"= {rate[bf16]:.0f} frames/s; collection {c / (c + lrn):.0%}, learning {lrn / (c + lrn):.0%}")
    learn_ratio = statistics.median(times[False][1]) / statistics.median(times[True][1])
    print(f"bf16 vs fp32: learning {learn_ratio:.2f}x faster, whole iteration {rate[True] / rate[False]:.2f}x; "
          f"torch threads {args.threads}, medians of {args.rounds} rounds")


if __name__ == "__main__":
    main()
