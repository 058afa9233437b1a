"""What every benchmark reports beside its figures: the CPU they were measured on, and latency percentiles."""

import platform
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
