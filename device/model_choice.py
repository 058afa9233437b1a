"""int8 or fp32, chosen on the board by the board's own clock.

A bundle whose int8 model passed the host's game-score gate (`edgerl export --int8`, `edgerl quantize`) carries
both models. Which is faster depends on the CPU: int8 wins on one with dot-product instructions (x86 VNNI, Armv8.2
dotprod), while onnxruntime's quantization guide warns it can lose on one without (a Raspberry Pi 4's Cortex-A72).
So the board's self-test times both on the golden inputs (one thread, after a warm-up, the runs interleaved so a
busy moment costs both alike) and writes its choice beside a deployed release's bundle (a self-test on the host
says it and changes nothing); `play`, `serve`, `bench` and `Policy.load` then run the chosen model, unless told
`--int8 on|off`.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from device.in_use import release_of
from device.layout import MODEL_CHOICE
from device.manifest import INT8_FILE, BundleError, Manifest, write_json_atomic

MARGIN = 0.95
"""int8 is chosen only when its median is at least 5 % below fp32's: fp32 is the model verified against the
eager policy, so a tie (or noise) keeps it."""
WARMUP, ROUNDS = 5, 40
INT8_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Choice:
    """The model this board runs, and why."""

    model_file: str
    fp32_ms: float | None
    int8_ms: float | None
    reason: str


def int8_admitted(manifest: Manifest) -> bool:
    """Whether the bundle carries an int8 model that passed the host's game-score gate."""
    return INT8_FILE in manifest.files and manifest.backends.get("int8", {}).get("status") == "ok"


def time_models(load: Callable[[str], Any], manifest: Manifest, feeds: list[dict[str, Any]],
                clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median milliseconds of one decision of each model on this board; the runs alternate, fp32 first.

    `load(model_file)` gives a one-thread Policy of that model (the caller's: this module stays below policy.py).
    """
    models = {"fp32": load(manifest.model_file), "int8": load(INT8_FILE)}
    for policy in models.values():
        for i in range(WARMUP):
            policy.run_inputs(feeds[i % len(feeds)])
    took: dict[str, list[float]] = {name: [] for name in models}
    for i in range(ROUNDS):
        for name, policy in models.items():
            started = clock()
            policy.run_inputs(feeds[i % len(feeds)])
            took[name].append(clock() - started)
    return {name: round(statistics.median(t) * 1000.0, 4) for name, t in took.items()}


def choose(load: Callable[[str], Any], manifest: Manifest, feeds: list[dict[str, Any]],
           clock: Callable[[], float] = time.perf_counter) -> Choice:
    """fp32, or int8 when it passed on the host and is faster here."""
    if not int8_admitted(manifest):
        return Choice(manifest.model_file, None, None, "fp32: the bundle has no int8 model that passed the host's "
                                                       "game-score gate")
    ms = time_models(load, manifest, feeds, clock)
    figures = f"int8 {ms['int8']:.3f} ms, fp32 {ms['fp32']:.3f} ms a decision (p50, 1 thread, this board)"
    if ms["int8"] < ms["fp32"] * MARGIN:
        return Choice(INT8_FILE, ms["fp32"], ms["int8"], f"int8: {figures}")
    return Choice(manifest.model_file, ms["fp32"], ms["int8"], f"fp32: int8 is not faster here ({figures})")


def write_choice(bundle: Path, manifest: Manifest, choice: Choice) -> bool:
    """Keep the choice beside a deployed release's bundle; False for a host's bundle, or where it cannot be written.

    MODEL_CHOICE is not one of the bundle's files but the board's measurement; a host's bundle folder is left as it
    is by a self-test.
    """
    if release_of(bundle) is None:
        return False
    try:
        write_json_atomic(Path(bundle) / MODEL_CHOICE, {"bundle_id": manifest.bundle_id, **asdict(choice)})
    except OSError:  # a read-only card: the board runs fp32 (auto), and says so at the next self-test
        return False
    return True


def read_choice(bundle: Path, manifest: Manifest) -> Choice | None:
    """The choice this board's self-test made for this bundle, or None (never self-tested here, or another bundle's)."""
    try:
        saved = json.loads((Path(bundle) / MODEL_CHOICE).read_text())
        if saved.pop("bundle_id") != manifest.bundle_id:
            return None
        return Choice(**saved)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def model_for(bundle: Path, manifest: Manifest, int8: str | bool = "auto") -> str:
    """The ONNX file to run: `on` the int8 one, `off` fp32, `auto` the self-test's choice (fp32 without one)."""
    mode = ("on" if int8 else "off") if isinstance(int8, bool) else int8
    if mode not in INT8_MODES:
        raise BundleError(f"--int8 is one of {', '.join(INT8_MODES)}, not {int8!r}")
    if mode == "off":
        return manifest.model_file
    if mode == "on":
        if INT8_FILE not in manifest.files:
            raise BundleError("this bundle has no int8 model; export it with `edgerl export --int8`")
        return INT8_FILE
    chosen = read_choice(bundle, manifest)
    if chosen is not None and chosen.model_file == INT8_FILE and int8_admitted(manifest):
        return INT8_FILE
    return manifest.model_file
