"""The board's health check: checksums, model I/O, and the golden frames on this hardware."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.manifest import BundleError, load_bundle
from device.policy import PolicySession


@dataclass
class SelftestResult:
    """Outcome of a self-test; `ok` only if every golden frame matched."""

    bundle_id: str
    frames: int
    max_abs_diff: float
    action_agreement: float
    atol: float
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """All checks held."""
        return not self.problems


def selftest(bundle: Path, threads: int | None = None, model_file: str | None = None) -> SelftestResult:
    """Run the golden frames through the model and compare with the recorded outputs."""
    manifest = load_bundle(bundle)
    policy = PolicySession(bundle, manifest, threads, model_file)
    try:
        with np.load(Path(bundle) / manifest.golden_file, allow_pickle=False) as golden:
            data = {k: golden[k] for k in golden.files}
    except (OSError, ValueError) as err:
        raise BundleError(f"cannot read {manifest.golden_file}: {err}; re-export the bundle") from err
    pixels = data["pixels"]
    deterministic = manifest.exploration.mode == "deterministic"
    worst, agree, problems = 0.0, 0, []
    for i in range(len(pixels)):
        policy.set_state({p.input: data[p.input][i] for p in manifest.state})
        index, values, states = policy.run(pixels[i])
        diffs = [np.abs(values - data[manifest.values_output][i]).max()]
        diffs += [np.abs(s - data[p.output][i]).max() for p, s in zip(manifest.state, states, strict=True)]
        worst = max(worst, float(max(diffs)))
        agree += int(index == int(data[manifest.action_output][i]))
    agreement = agree / max(len(pixels), 1)
    if worst > manifest.golden_atol:
        problems.append(f"outputs differ from the golden ones by {worst:.3g} > tolerance {manifest.golden_atol:g}")
    if deterministic and agreement < 1.0:
        problems.append(f"only {agreement:.1%} of golden actions match")
    return SelftestResult(manifest.bundle_id, len(pixels), worst, agreement, manifest.golden_atol, problems)
