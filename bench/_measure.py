"""What every benchmark reports beside its figures: the CPU they were measured on, and latency percentiles."""

import platform
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np


def cpu_name() -> str:
    """The CPU's model name (figures differ between an AVX2-only and an AVX-512 machine)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def p50_p99_ms(samples: list[float]) -> tuple[float, float]:
    """Median and 99th percentile of durations in seconds, in milliseconds."""
    return float(np.percentile(samples, 50) * 1e3), float(np.percentile(samples, 99) * 1e3)


def alternated(arms: dict[str, Callable[[], float]], rounds: int, what: str = "s") -> dict[str, float]:
    """Each arm's figure `rounds` times, the arms in turn within a round (drift on a shared machine hits them
    alike), each printed as it comes; the median of each arm."""
    figures: dict[str, list[float]] = {name: [] for name in arms}
    width = max(map(len, arms))
    for round_no in range(rounds):
        for name, measure in arms.items():
            figures[name].append(measure())
            print(f"  round {round_no + 1} {name:<{width}} {figures[name][-1]:6.2f} {what}", flush=True)
    return {name: statistics.median(values) for name, values in figures.items()}
