"""Any configuration a TorchRL user can build ends one of two ways: verified exactly, or refused before writing.

A case drawn with something the board cannot take (one in ten) must be refused, in one line naming it; every
other case must be taken.

The cases are drawn (tests/drawn_cases.py), not picked: `make test` runs a
fixed-seed sample, `make fidelity-campaign` 500 with a fresh seed. "Exported,
then failed verify" is a failure of edgerl, whatever the case.
"""

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from campaign import trials  # noqa: E402
from drawn_cases import draw  # noqa: E402

from device.manifest import EdgerlError, load_bundle  # noqa: E402
from host.bundle.export import ExportOptions  # noqa: E402
from host.bundle.pipeline import export_policy  # noqa: E402
from host.errors import VerifyError  # noqa: E402

SEED = int(os.environ.get("EDGERL_DRAW_SEED", "2035"))
"""The fixed sample's stream (its 8 cases span pixels and sensors, both batched layouts, a sampled Normal, a
nearest resize, a recurrent C51, and two refusals); `make fidelity-campaign` passes a fresh one (and prints it)."""
STEPS = 100
"""Steps of real play each case is verified over (its episodes start over inside them for CartPole)."""
WARM_SAMPLES = 50
"""At least what a VecNorm counts over the generator's 100 warm-up steps (v1's decayed count of 0.99: ~63)."""
OUTCOMES = Path(__file__).resolve().parents[3] / "build" / "drawn-matrix" / f"{SEED}.jsonl"


def _record(case: object, outcome: str, detail: str = "") -> None:
    OUTCOMES.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"case": str(case), "outcome": outcome, "detail": detail[:300]}) + "\n"
    with OUTCOMES.open("a") as out:  # one short append per case: whole lines, even from two workers
        out.write(line)


REGRESSIONS = {
    # name: (seed, index, what the generator draws there): each was exported-then-unfaithful or wrongly refused
    "a sampled Normal action (compared as a draw)": (1, 308, "Pendulum-v1, normal, single, stochastic"),
    "a sampled TanhNormal action after a GRU, with the reading's history as a second input":
        (1, 65, "Pendulum-v1, stack_new_key, GRU, tanh, single, stochastic"),
    "VecNormV2 inside a SerialEnv's workers (its statistics live there)":
        (1, 67, "Pendulum-v1, clip, clip, vecnorm, stack_new_key, deterministic, serial_inside"),
    "VecNormV2 and a GRU's primer over a SerialEnv (statistics and specs per worker)":
        (1, 341, "Pendulum-v1, vecnorm, GRU, normal, serial_over"),  # was 1:78 before ParallelEnv was drawn
    "two CatFrames on the same screen key": (1, 113, "ALE/Freeway-v5, ToTensorImage->pixels, Resize(76,78,nearest), "
                                                     "CatFrames(4), CatFrames(4), CenterCrop(9,15), qvalue, single"),
    "two CatFrames on the same vector": (1, 280, "CartPole-v1, norm, stack, stack, norm, qvalue, single"),
    "VecNormV2 inside a ParallelEnv's workers, never stepped (its EnvCreator's reset is not statistics)":
        (1796291773, 213, "Pendulum-v1, clip, vecnorm, rename, normal, +cold VecNormV2, parallel_inside, stochastic"),
    "VecNormV2 at its floor after a bilinear resize (onnxruntime's rounding magnified)":
        (1796294867, 2, "ALE/Breakout-v5, ToTensorImage->screen, Crop(205x92@0,23), Resize(25,91,bilinear), "
                        "VecNorm(v2), qvalue, serial_inside"),
    "VecNormV2 inside a ParallelEnv of partials (statistics only in the workers)":
        (1796291773, 381, "CartPole-v1, rename, vecnorm, stack, GRU, c51, parallel_inside(partial)"),
    "a GRU pixel policy whose encoder sizes itself at its first call (copied unsized: other weights)":
        (1, 26, "lazy, ALE/Freeway-v5, ToTensorImage->screen, CenterCrop(39,122), thumb@1=Resize(11,31,nearest), "
                "VecNorm(v2), GRU, categorical, single, stochastic"),
    "a C51 head after a lazy encoder (rewritten, so copied too)":
        (1, 29, "lazy, ALE/Freeway-v5, ToTensorImage->pixels, Clip, Resize(68,38,nearest), GrayScale, VecNorm(v1), "
                "c51, single"),
}
"""Failures the drawn matrix found, kept as named cases (the generator must still draw them: else re-pin)."""


def _check(drawn: tuple, tmp_path: Path) -> None:
    case, policy, env = drawn
    out = tmp_path / "bundle"
    options = ExportOptions(aoti=False, verify_steps=STEPS, exploration="random" if case.stochastic else
                            "deterministic", label="drawn")
    try:
        bundle = export_policy(policy, env, out, options=options, say=lambda _: None)
    except VerifyError as err:
        _record(case, "unfaithful", str(err))
        pytest.fail(f"{case}: exported, then failed verify: {err}")
    except EdgerlError as err:
        _record(case, "refused", str(err))
        expected = case.refusal or case.may_refuse
        assert expected, f"{case}: refused, though the board can take all of it: {err}"
        assert expected in str(err) and "\n" not in str(err), f"{case}: refused in other words: {err}"
        assert not out.exists(), f"{case}: refused after writing {sorted(p.name for p in out.iterdir())}"
        return
    finally:
        if not env.is_closed:  # an unstarted batched env counts as closed, and refuses a second close
            env.close()
    assert not case.refusal, f"{case}: taken, though the board cannot reproduce {case.refusal}"
    manifest = load_bundle(bundle)
    parity = manifest.parity
    problems = [] if parity["ok"] and set(parity["backends"]) == {"onnx", "pt2"} else [f"parity {parity}"]
    for backend, figures in parity["backends"].items():
        if figures["max_abs_diff_values"] > 1e-4 or figures["max_abs_diff_state"] > 1e-4:
            problems.append(f"{backend} {figures}")
        if parity["mode"] == "deterministic" and figures["action_agreement"] != 1.0:
            problems.append(f"{backend} actions {figures['action_agreement']:.2%}")  # a draw is not compared
    if case.stochastic and manifest.action.kind == "continuous" and not manifest.sampled_from:
        problems.append("a sampled continuous action with no distribution outputs to compare")
    # verify compares the graph with the env's one-env copy: statistics the copy did not take from the training
    # env's workers would pass it. The generator warms every VecNorm with 100 steps of the env as built.
    for norm in manifest.provenance.get("normalization", []):
        if norm["samples"] < WARM_SAMPLES:
            problems.append(f"{norm['transform']} on {norm['in']} baked from {norm['samples']} observations, not "
                            "the training env's")
    _record(case, "unfaithful" if problems else "taken", "; ".join(problems))
    assert not problems, f"{case}: {problems}"


@pytest.mark.campaign
@pytest.mark.parametrize("index", range(trials(8, 500)))
def test_a_drawn_configuration_is_verified_exactly_or_refused_before_anything_is_written(index, tmp_path):
    _check(draw(SEED, index), tmp_path)


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_a_configuration_the_drawn_matrix_once_failed_is_verified_exactly(name, tmp_path):
    seed, index, what = REGRESSIONS[name]
    drawn = draw(seed, index)
    assert str(drawn[0]).endswith(what), "the generator changed: re-pin this case to its configuration"
    _check(drawn, tmp_path)
