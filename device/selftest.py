"""The board's health check: checksums, model I/O, the golden frames on this hardware, and the game it will play."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.manifest import BundleError
from device.model_choice import Choice, choose, int8_admitted, write_choice
from device.policy import Policy, PolicyError, checked_action
from device.trust import load_trusted


@dataclass
class SelftestResult:
    """Outcome of a self-test; `ok` only if every golden frame matched."""

    bundle_id: str
    frames: int
    max_abs_diff: float
    action_agreement: float
    atol: float
    problems: list[str] = field(default_factory=list)
    choice: Choice | None = None
    """int8 or fp32 by this board's clock, when the bundle carries an int8 model that passed on the host."""

    @property
    def ok(self) -> bool:
        """All checks held."""
        return not self.problems


def read_golden(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """The golden arrays by name; one line naming the problem when the file is damaged or incomplete."""
    try:
        with np.load(path, allow_pickle=False) as golden:
            data = {k: golden[k] for k in golden.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise BundleError(f"cannot read {path.name}: {err}; re-export the bundle") from err
    missing = [n for n in names if n not in data]
    if missing:
        raise BundleError(f"{path.name} lacks the arrays {missing}; re-export the bundle")
    counts = {len(data[n]) for n in names}
    if len(counts) != 1:
        raise BundleError(f"{path.name} holds arrays of different lengths; re-export the bundle")
    return data


def selftest(bundle: Path, threads: int | None = None, model_file: str | None = None,
             clock: Callable[[], float] = time.perf_counter) -> SelftestResult:
    """Run the recorded golden inputs through the model and compare with the recorded outputs.

    For a bundle with an int8 model that passed on the host, both models are then timed on this board and the
    faster one kept (device/model_choice.py).
    """
    bundle = Path(bundle).resolve()  # once: a `current` link flipped meanwhile cannot mix two releases
    manifest = load_trusted(bundle)
    if manifest.env is not None:
        # Everything `play` will need, checked before the release can become current. Deferred: a sensor
        # bundle's self-test never loads ale-py.
        from device.atari import AtariGame

        AtariGame(manifest.env, manifest.action_ids)
    policy = Policy(bundle, manifest, threads, model_file)
    input_names = [t.name for t in manifest.inputs]
    output_names = [t.name for t in manifest.outputs]
    data = read_golden(Path(bundle) / manifest.golden_file, input_names + output_names)
    deterministic = manifest.exploration.mode == "deterministic"
    frames = len(data[input_names[0]])
    worst, agree, problems = 0.0, 0, []
    for i in range(frames):
        got = policy.run_inputs({name: data[name][i] for name in input_names})
        for name in output_names:
            expected = data[name][i]
            if name == manifest.action_output and not np.issubdtype(expected.dtype, np.floating):
                agree += int(np.array_equal(got[name], expected))
            elif np.issubdtype(expected.dtype, np.floating):
                worst = max(worst, float(np.abs(got[name] - expected).max(initial=0.0)))
        if np.issubdtype(data[manifest.action_output].dtype, np.floating):
            agree += int(np.abs(got[manifest.action_output] - data[manifest.action_output][i]).max(initial=0.0)
                         <= manifest.golden_atol)
        if manifest.env is None and manifest.action is not None:
            try:
                checked_action(got[manifest.action_output], manifest.action)
            except PolicyError as err:
                problems.append(f"golden frame {i}: {err}")
        if manifest.env is not None and not 0 <= int(got[manifest.action_output]) < len(manifest.action_ids):
            problems.append(f"golden frame {i} gives action index {int(got[manifest.action_output])}, outside the "
                            "action table")
    agreement = agree / max(frames, 1)
    if worst > manifest.golden_atol:
        problems.append(f"outputs differ from the golden ones by {worst:.3g} > tolerance {manifest.golden_atol:g}")
    if deterministic and agreement < 1.0:
        problems.append(f"only {agreement:.1%} of golden actions match")
    choice = None
    if not problems and int8_admitted(manifest):
        feeds = [{name: data[name][i] for name in input_names} for i in range(frames)]
        choice = choose(lambda model: Policy(bundle, manifest, 1, model), manifest, feeds, clock)
        write_choice(bundle, manifest, choice)
    return SelftestResult(manifest.bundle_id, frames, worst, agreement, manifest.golden_atol, problems, choice)
