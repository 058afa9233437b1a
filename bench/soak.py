"""Soak: play a long run on the board's loop and watch resident memory.

    python bench/soak.py [--steps 1000000] [--policy stacked]

Prints RSS after warm-up and at the end; growth must stay under 5 MB.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bundles import bundle  # noqa: E402

from device.atari import AtariGame  # noqa: E402
from device.manifest import load_bundle  # noqa: E402
from device.play import current_rss_mb, peak_rss_mb  # noqa: E402
from device.policy import Policy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--policy", default="stacked", choices=["dqn", "stacked", "lstm"])
    args = parser.parse_args()
    path = bundle(args.policy)
    manifest = load_bundle(path)
    policy = Policy(path, manifest)
    game = AtariGame(manifest.env, manifest.action_ids)
    game.seed(0)
    screen = game.reset()
    warm = 5000
    episodes = 0
    t0 = time.perf_counter()
    for step in range(args.steps):
        if step == warm:
            rss_warm = current_rss_mb()
            t_warm = time.perf_counter()
        if game.step(policy.act(screen)).done:
            screen = game.reset()
            policy.reset()
            episodes += 1
        if step and step % 100_000 == 0:
            print(f"{step:>8} steps, {episodes} episodes, rss {current_rss_mb():.1f} MB", flush=True)
    rss_end = current_rss_mb()
    print(f"policy {args.policy}: {args.steps} steps, {episodes} episodes in {time.perf_counter() - t0:.0f} s; "
          f"rss after {warm} steps {rss_warm:.1f} MB, at end {rss_end:.1f} MB, growth {rss_end - rss_warm:+.2f} MB "
          f"(peak {peak_rss_mb():.1f} MB); {(args.steps - warm) / (time.perf_counter() - t_warm):.0f} steps/s")


if __name__ == "__main__":
    main()
