"""`make model` replaces the shipped policy only by one that scores higher on the device loop."""

import shutil

import pytest

from device.manifest import load_bundle, write_manifest
from host.bundle.evaluate import EvaluateConfig, record_evaluation
from host.bundle.promote import PromoteConfig, PromoteError, promote
from host.cli import main


def _evaluated_copy(bundle, dest):
    shutil.copytree(bundle, dest)
    record_evaluation(EvaluateConfig(dest, episodes=2, max_steps=80), say=lambda _: None)
    return dest


def test_a_candidate_replaces_the_shipped_bundle_only_when_it_scores_higher(bundles, tmp_path, capsys):
    candidate = _evaluated_copy(bundles["stacked"], tmp_path / "candidate")
    shipped = tmp_path / "models" / "pong"
    shipped.parent.mkdir()

    replaced, why = promote(PromoteConfig(candidate, shipped))
    assert replaced and "replaced" in why
    assert load_bundle(shipped).provenance["evaluation"] == load_bundle(candidate).provenance["evaluation"]

    # The same scores again are not better: the shipped bundle stays as it is.
    assert main(["promote", str(candidate), "--to", str(shipped)]) == 0
    assert "kept" in capsys.readouterr().out

    # A candidate that scored higher replaces it, and leaves no staging folders behind.
    manifest = load_bundle(candidate)
    manifest.provenance["evaluation"]["mean"] += 1.0
    write_manifest(candidate, manifest)
    replaced, _ = promote(PromoteConfig(candidate, shipped))
    assert replaced
    assert load_bundle(shipped).provenance["evaluation"]["mean"] == manifest.provenance["evaluation"]["mean"]
    assert sorted(p.name for p in shipped.parent.iterdir()) == ["pong"]


def test_an_unevaluated_candidate_is_refused_in_one_line(bundles, tmp_path, capsys):
    candidate = tmp_path / "candidate"
    shutil.copytree(bundles["stacked"], candidate)
    with pytest.raises(PromoteError, match="edgerl evaluate"):
        promote(PromoteConfig(candidate, tmp_path / "shipped"))
    assert main(["promote", str(candidate), "--to", str(tmp_path / "shipped")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "evaluate" in err[0]
    assert not (tmp_path / "shipped").exists()
