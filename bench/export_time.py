"""An Atari export with verify, as a user iterates on one: the default export beside one with --aoti, one run.

    python bench/export_time.py [--rounds 1] [--script dqn_atari] [--steps 1000]

Each round exports TorchRL's own Atari reference (tests/references/SCRIPT.py, the env it trains in: VecNorm
warmed, frames stacked) with the real CLI in a fresh process, the whole command timed: import, the user's factory,
pt2 + ONNX, the 1000-step eager rollout and every backend's verification. The goal (issue 26) is the default
export <= 30 s on 2 cores; the --aoti arm shows what AOTInductor's compile adds (host-only: the board runs ONNX).
"""

import argparse
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from _measure import alternated, cpu_name

REPO = Path(__file__).resolve().parents[1]
EDGERL = Path(sys.executable).with_name("edgerl")


def one_export(script: str, steps: int, extra: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = subprocess.run([str(EDGERL), "export", "--from", f"tests/references/{script}.py:make", "--out",
                              f"{tmp}/b", "--verify-steps", str(steps), *extra],
                             cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"export {' '.join(extra) or '(default)'} failed (exit {run.returncode}): "
                 f"{run.stderr.strip().splitlines()[-1:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--script", default="dqn_atari", choices=["dqn_atari", "ppo_atari"])
    parser.add_argument("--steps", type=int, default=1000, help="verify steps (the CLI's default 1000)")
    args = parser.parse_args()
    arms = {"default": [], "--aoti": ["--aoti"]}
    print(f"{args.script}, {args.steps} verify steps, {cpu_name()}, {args.rounds} round(s)", flush=True)
    medians = alternated({name: partial(one_export, args.script, args.steps, extra) for name, extra in arms.items()},
                         args.rounds)
    default, aoti = medians["default"], medians["--aoti"]
    print(f"median: default {default:.1f} s (goal <= 30 s: {'met' if default <= 30 else 'NOT met'}), "
          f"--aoti {aoti:.1f} s, ratio {aoti / default:.2f}x")


if __name__ == "__main__":
    main()
