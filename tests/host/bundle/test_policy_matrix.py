"""Every kind of TorchRL policy and transform a user brings is either exported and verified, or refused in one line.

The cases live in tests/policy_matrix.py; docs/policies.md's table
states the same outcomes and is checked here against what really happens.
"""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from policy_matrix import CASES, REFUSED  # noqa: E402

from device.manifest import EdgerlError, load_bundle  # noqa: E402
from device.selftest import selftest  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def _export(name: str, out: Path) -> Path:
    from host.bundle.export import ExportOptions
    from host.bundle.pipeline import export_policy

    policy, env, *rest = CASES[name]()
    return export_policy(policy, env, out, example=rest[0] if rest else None,
                         options=ExportOptions(aoti=False, verify_steps=300, label="matrix"), say=lambda _: None)


@pytest.mark.parametrize("name", [n for n in CASES if n not in REFUSED])
def test_a_supported_combination_exports_and_verifies_on_every_backend(name, tmp_path):
    bundle = _export(name, tmp_path / "bundle")
    manifest = load_bundle(bundle)
    assert manifest.parity["ok"] and set(manifest.parity["backends"]) == {"onnx", "pt2"}
    for backend, figures in manifest.parity["backends"].items():
        assert figures["action_agreement"] == 1.0, (backend, figures)
        assert figures["max_abs_diff_values"] <= 1e-4 and figures["max_abs_diff_state"] <= 1e-4, (backend, figures)
    action = manifest.action
    assert action is not None, "the manifest says what the action is"
    if action.kind == "continuous":  # Pendulum's torque, from the env's Bounded spec
        assert (action.low, action.high) == ([-2.0], [2.0]), action
    else:
        assert action.n == (len(manifest.action_ids) if manifest.env is not None else 2), action  # CartPole: 2
    result = selftest(bundle)
    assert result.ok, result.problems


@pytest.mark.parametrize("name", list(REFUSED))
def test_an_unsupported_combination_is_refused_in_one_line_naming_it(name, tmp_path):
    with pytest.raises(EdgerlError) as refused:
        _export(name, tmp_path / "bundle")
    message = str(refused.value)
    assert "\n" not in message and REFUSED[name] in message, message
    assert not (tmp_path / "bundle").exists()


def test_the_policies_table_states_what_the_matrix_finds():
    section = (REPO / "docs" / "policies.md").read_text()
    rows = dict(re.findall(r"^\| (.+?) \| (taken|refused)\b", section, flags=re.M))
    assert set(rows) == set(CASES), set(rows) ^ set(CASES)
    for name, outcome in rows.items():
        assert outcome == ("refused" if name in REFUSED else "taken"), name
