"""fp32 vs int8 policy latency, interleaved in one run, plus graph-optimisation levels and thread counts.

    python bench/int8_latency.py [--policy stacked] [--calls 2000]

The int8 model is made with edgerl's static quantization (QDQ, per-channel)
calibrated on real frames; latency does not depend on whether it was accepted.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from _bundles import bundle  # noqa: E402

from device.manifest import load_bundle  # noqa: E402
from host.bundle.quantize import _feeds, _session, quantize  # noqa: E402
from host.bundle.screens import collect_screens  # noqa: E402

LEVELS = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


def session(path: Path, threads: int, level: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = LEVELS[level]
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policy", default="stacked", choices=["dqn", "stacked", "lstm"])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    path = bundle(args.policy)
    manifest = load_bundle(path)
    played = collect_screens(manifest.env, 256, seed=7, segment=128)
    fp32 = _session(path / manifest.model_file)
    feeds = _feeds(played.screens, played.starts, fp32, manifest)
    with tempfile.TemporaryDirectory() as tmp:
        int8_path = Path(tmp) / "int8.onnx"
        quantize(path / manifest.model_file, int8_path, feeds)
        models = {"fp32": path / manifest.model_file, "int8": int8_path}
        configs = [(m, t, lvl) for m in models for t in (1, 2) for lvl in LEVELS]
        sessions = {c: session(models[c[0]], c[1], c[2]) for c in configs}
        samples = {c: [] for c in configs}
        for s in sessions.values():
            for f in feeds[:20]:
                s.run(None, f)
        # Interleave every configuration call by call, so machine noise hits all alike.
        for i in range(args.calls):
            f = feeds[i % len(feeds)]
            for c, s in sessions.items():
                t0 = time.perf_counter()
                s.run(["action"], f)
                samples[c].append(time.perf_counter() - t0)
    stats = {c: (np.percentile(v, 50) * 1e3, np.percentile(v, 99) * 1e3) for c, v in samples.items()}
    print(f"policy {args.policy}, {args.calls} calls each, interleaved")
    print(f"{'model':<6}{'threads':>8}{'level':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for (m, t, lvl), (p50, p99) in stats.items():
        print(f"{m:<6}{t:>8}{lvl:>10}{p50:>9.3f}{p99:>9.3f}")
    f32, i8 = stats[("fp32", 1, "all")], stats[("int8", 1, "all")]
    print(f"int8 vs fp32, 1 thread, ORT_ENABLE_ALL: p50 {f32[0] / i8[0]:.2f}x faster, p99 {f32[1] / i8[1]:.2f}x faster")


if __name__ == "__main__":
    main()
