"""Bad input to export and verify: one clear line, a non-zero exit, nothing half-written."""

import json
import shutil
import subprocess
import sys

import in_process
import pytest
import torch

from host.bundle.pipeline import ExportConfig, export_bundle
from host.errors import ExportError


def edgerl(*args):
    return in_process.edgerl(*args, timeout=600)


def one_line_error(run, *words):
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    for word in words:
        assert word in lines[-1], lines[-1]


def test_missing_checkpoint(tmp_path):
    run = edgerl("export", tmp_path / "no-such-run", "--out", tmp_path / "b", "--no-verify")
    one_line_error(run, "no checkpoint")
    assert not (tmp_path / "b").exists()


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x02garbage" * 100)
    run = edgerl("export", tmp_path / "checkpoint.pt", "--out", tmp_path / "b", "--no-verify")
    one_line_error(run, "corrupt")


def test_output_folder_that_is_not_a_bundle_is_left_alone(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    run = edgerl("export", "--untrained", "--out", out, "--no-aoti", "--no-verify")
    one_line_error(run, "not a bundle")
    assert (out / "notes.txt").read_text() == "keep me"


def test_tampered_bundle_is_refused_by_verify(bundle_copy):
    bundle = bundle_copy("dqn")
    with open(bundle / "policy.onnx", "r+b") as fh:
        fh.seek(5000)
        fh.write(b"\x00\x01\x02\x03")
    run = edgerl("verify", bundle)
    one_line_error(run, "policy.onnx", "sha256")


def test_unknown_manifest_version_is_refused(bundle_copy):
    bundle = bundle_copy("dqn")
    data = json.loads((bundle / "manifest.json").read_text())
    data["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(data))
    run = edgerl("verify", bundle)
    one_line_error(run, "format version 99")


def test_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated crash in the ONNX exporter")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(ExportError, match="simulated crash"):
        export_bundle(ExportConfig(out=tmp_path / "b", untrained=True, aoti=False), say=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_failed_reexport_keeps_the_previous_bundle(bundles, tmp_path, monkeypatch):
    out = tmp_path / "b"
    shutil.copytree(bundles["dqn"], out)
    before = (out / "manifest.json").read_text()
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(ExportError, match="boom"):
        export_bundle(ExportConfig(out=out, untrained=True, aoti=False), say=lambda _: None)
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_aoti_failure_is_recorded_and_other_formats_go_on(tmp_path, monkeypatch):
    def no_compiler(*args, **kwargs):
        raise OSError("version `GLIBCXX_3.4.32' not found (required by the compiled package)")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", no_compiler)
    lines = []
    # The other formats go on to be verified: 100 steps say so as well as the default 1000.
    out = export_bundle(ExportConfig(out=tmp_path / "b", untrained=True, aoti=True, verify_steps=100),
                        say=lines.append)
    from device.manifest import load_bundle

    manifest = load_bundle(out)
    assert manifest.parity["ok"] and set(manifest.parity["backends"]) == {"onnx", "pt2"}
    aoti = manifest.backends["aoti"]
    assert aoti["status"] == "failed" and "GLIBCXX" in aoti["reason"] and "\n" not in aoti["reason"]
    assert any(line.strip().startswith("aoti  failed: OSError") for line in lines)
    assert (out / "policy.onnx").is_file() and not (out / "policy.aoti.pt2").exists()


def test_commands_without_boards_do_not_need_paramiko(tmp_path):
    # A host without the deploy extra: paramiko cannot be imported.
    code = ("import sys; sys.modules['paramiko'] = None\n"
            "from host.cli import main\n"
            f"sys.exit(main(['plot', {str(tmp_path / 'none')!r}]))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "paramiko" not in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert "does not exist" in run.stderr
    run = subprocess.run([sys.executable, "-c", "import sys; sys.modules['paramiko'] = None\n"
                          "from host.cli import main\nsys.exit(main(['status', '--on', 'local:/x']))"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "edgerl[deploy]" in run.stderr, run.stderr


def test_the_cli_offers_exactly_the_built_in_networks():
    # The CLI keeps its own copy of the names so `edgerl --help` does not load torch; it must not drift.
    from host.cli import NETWORKS as offered
    from host.policies import NETWORKS

    assert offered == NETWORKS


def test_a_graph_onnxruntime_cannot_run_is_refused_by_verify_in_one_line(bundle_copy):
    from onnx import TensorProto, helper, save

    from device.layout import sha256_file

    bundle = bundle_copy("dqn")
    # What a first cut of the nearest-resize fix exported: a float64 Resize, which onnxruntime does not implement.
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["action"], mode="nearest")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("action", TensorProto.DOUBLE, None)],
                              [helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 1, 4, 4])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(bundle / "policy.onnx"))
    data = json.loads((bundle / "manifest.json").read_text())
    data["files"]["policy.onnx"] = sha256_file(bundle / "policy.onnx")  # as written by the export itself
    (bundle / "manifest.json").write_text(json.dumps(data))
    run = edgerl("verify", bundle)
    one_line_error(run, "onnxruntime", "cannot run policy.onnx", "Resize", "do not ship this bundle")


def test_exploration_flags_that_would_do_nothing_are_refused_before_any_work(tmp_path):
    # A plain QValueActor has nothing random: --stochastic would export its argmax under another name.
    run = edgerl("export", "--from", "examples/breakout_stacked.py:make", "--stochastic", "--out", tmp_path / "b")
    one_line_error(run, "--stochastic", "QValueActor has nothing random", "EGreedyModule")
    assert run.returncode == 2 and not (tmp_path / "b").exists()
    # --epsilon is the rate of edgerl's own networks, and only when exporting stochastic.
    run = edgerl("export", "--from", "examples/tutorial_dqn.py:make", "--stochastic", "--epsilon", "0.1",
                 "--out", tmp_path / "b")
    one_line_error(run, "--epsilon", "a --from policy explores as its own modules say")
    run = edgerl("export", "--untrained", "--epsilon", "0.1", "--out", tmp_path / "b")
    one_line_error(run, "--epsilon", "give --stochastic too")
    assert not (tmp_path / "b").exists()
