"""Cold start: process start to first action, vs a bare `python -c pass`, same machine, one run.

    python bench/cold_start.py [--policy dqn]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bundles import bundle  # noqa: E402


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policy", default="dqn", choices=["dqn", "stacked", "lstm"])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    path = bundle(args.policy)
    report = Path(tempfile.mkdtemp()) / "r.json"
    play = [sys.executable, "-m", "device", "play", str(path), "--max-steps", "1", "--quiet", "--report", str(report)]
    bare, full, inproc = [], [], []
    for _ in range(args.rounds):
        bare.append(wall([sys.executable, "-c", "pass"]))
        full.append(wall(play))
        inproc.append(json.loads(report.read_text())["cold_start_s"])
    print(f"bare python start {min(bare) * 1000:.0f} ms; `python -m device play` process start to exit after its "
          f"first action {min(full) * 1000:.0f} ms (of which bundle check + session + ROM to first action "
          f"{min(inproc) * 1000:.0f} ms); ratio to bare python {min(full) / min(bare):.1f}x")


if __name__ == "__main__":
    main()
