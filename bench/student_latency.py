"""A distilled student's decision latency against its teacher's, one thread, interleaved call by call in one run.

    python bench/student_latency.py build/pong-student [--teacher models/pong] [--calls 3000]

Both models are fed the same Pong screens (the teacher's own games), each with its own frame stack carried
along and reset at episode starts, so each call is a real decision of its bundle: the screen's preprocessing
inside the graph, the network, the argmax.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _measure import cpu_name, p50_p99_ms  # noqa: E402

from device.manifest import load_bundle  # noqa: E402
from host.bundle.quantize import _feeds, _session  # noqa: E402
from host.bundle.screens import policy_screens  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("student", type=Path, help="the student's bundle")
    parser.add_argument("--teacher", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "pong")
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    played = policy_screens(args.teacher, 256, seed=7, segment=128)
    runs = {}
    for name, bundle in (("teacher", args.teacher), ("student", args.student)):
        manifest = load_bundle(bundle)
        session = _session(bundle / manifest.model_file)
        runs[name] = (session, _feeds(played.screens, played.starts, session, manifest))
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for session, feeds in runs.values():
        for f in feeds[:50]:
            session.run(None, f)
    # Interleaved call by call, so the machine's noise hits both alike.
    for i in range(args.calls):
        for name, (session, feeds) in runs.items():
            f = feeds[i % len(feeds)]
            t0 = time.perf_counter()
            session.run(None, f)
            samples[name].append(time.perf_counter() - t0)
    stats = {name: p50_p99_ms(v) for name, v in samples.items()}
    print(f"{args.calls} decisions each, 1 onnxruntime thread, interleaved; {cpu_name()}")
    print(f"{'model':<10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, (p50, p99) in stats.items():
        print(f"{name:<10}{p50:>9.3f}{p99:>9.3f}")
    teacher, student = stats["teacher"], stats["student"]
    print(f"student vs teacher: p50 {teacher[0] / student[0]:.2f}x faster, p99 {teacher[1] / student[1]:.2f}x faster")


if __name__ == "__main__":
    main()
