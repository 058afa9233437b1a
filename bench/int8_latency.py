"""fp32 vs int8 policy latency, one thread, interleaved call by call in one run.

    python bench/int8_latency.py [--bundle models/pong] [--calls 3000]

The models compared are the bundle's own: policy.onnx and, when the bundle
ships one, policy.int8.onnx (otherwise one is made with edgerl's
quantization, calibrated on the policy's own games). A third column, the
fp32 model with its resize moved ahead of the float conversion (what the
int8 model is made from), shows how much of int8's gain is that rewrite.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnx  # noqa: E402
from _measure import p50_p99_ms  # noqa: E402

from device.manifest import INT8_FILE, load_bundle  # noqa: E402
from host.bundle.quantize import _feeds, _session, quantize  # noqa: E402
from host.bundle.resize_first import resize_first  # noqa: E402
from host.bundle.screens import policy_screens  # noqa: E402


def _int8_dot_products() -> str:
    """Whether this CPU has int8 dot-product instructions (what makes int8 fast), from /proc/cpuinfo."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    found = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})
    return ", ".join(found) if found else "none (AVX2 u8s8 products only)" if "avx2" in flags else "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "pong")
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    manifest = load_bundle(args.bundle)
    played = policy_screens(args.bundle, 256, seed=7, segment=128)
    fp32 = _session(args.bundle / manifest.model_file)
    feeds = _feeds(played.screens, played.starts, fp32, manifest)
    with tempfile.TemporaryDirectory() as tmp:
        models = {"fp32": args.bundle / manifest.model_file}
        moved, _ = resize_first(onnx.load(str(models["fp32"])))
        models["fp32, resize first"] = Path(tmp) / "moved.onnx"
        onnx.save(moved, str(models["fp32, resize first"]))
        if INT8_FILE in manifest.files:
            models["int8"] = args.bundle / INT8_FILE
        else:
            models["int8"] = Path(tmp) / "int8.onnx"
            quantize(models["fp32"], models["int8"], feeds)
        sessions = {name: _session(path) for name, path in models.items()}
        samples: dict[str, list[float]] = {name: [] for name in sessions}
        for s in sessions.values():
            for f in feeds[:50]:
                s.run(None, f)
        # Interleaved call by call, so the machine's noise hits every model alike.
        for i in range(args.calls):
            f = feeds[i % len(feeds)]
            for name, s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, f)
                samples[name].append(time.perf_counter() - t0)
    stats = {name: p50_p99_ms(v) for name, v in samples.items()}
    print(f"{args.bundle}: {args.calls} calls each, 1 thread, interleaved"
          f"{'' if INT8_FILE in manifest.files else ' (int8 made here: the bundle ships none)'}")
    print(f"int8 dot-product instructions on this CPU: {_int8_dot_products()}")
    print(f"{'model':<20}{'p50 ms':>9}{'p99 ms':>9}{'p50 x':>8}{'p99 x':>8}")
    base = stats["fp32"]
    for name, (p50, p99) in stats.items():
        print(f"{name:<20}{p50:>9.3f}{p99:>9.3f}{base[0] / p50:>8.2f}{base[1] / p99:>8.2f}")
    i8 = stats["int8"]
    print(f"int8 vs fp32: p50 {base[0] / i8[0]:.2f}x faster, p99 {base[1] / i8[1]:.2f}x faster")


if __name__ == "__main__":
    main()
