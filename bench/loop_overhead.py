"""Device loop vs the bare cost of its parts (ALE steps alone + ONNX calls alone), one run.

    python bench/loop_overhead.py [--steps 3000] [--policy dqn] [--threads 1]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bundles import bundle  # noqa: E402

from device.bench import BenchConfig, bench  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--policy", default="dqn", choices=["dqn", "stacked", "lstm"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    fig = bench(BenchConfig(bundle(args.policy), steps=args.steps, threads=args.threads))
    print(f"policy {args.policy}, {args.threads} thread(s): loop {fig['loop_steps_per_s']:.0f} steps/s, "
          f"parts alone {fig['parts_steps_per_s']:.0f} steps/s (emulator {fig['emulator_ms_per_step']:.3f} ms + "
          f"policy {fig['policy_ms_per_call']:.3f} ms per step): overhead {fig['overhead_pct']:+.1f} %")


if __name__ == "__main__":
    main()
