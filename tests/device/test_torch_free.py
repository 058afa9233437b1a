"""The device package runs in a venv holding only numpy, onnxruntime and ale-py."""

import importlib.util
import json

CHECK = """
import sys, runpy
sys.argv = ["device", *sys.argv[1:]]
try:
    runpy.run_module("device", run_name="__main__")
except SystemExit as done:
    code = done.code
assert "torch" not in sys.modules, "torch was imported"
host_side = {"torchrl", "tensordict", "onnx", "host"}
assert not any(m.split(".")[0] in host_side for m in sys.modules), "host modules imported"
sys.exit(code)
"""


def test_device_never_imports_torch(board_python, bundles, tmp_path):
    freeze = board_python("-m", "pip", "freeze", cwd=tmp_path).stdout
    names = {line.split("==")[0].lower() for line in freeze.splitlines()}
    assert not names & {"torch", "torchrl", "tensordict", "onnx", "gymnasium"}, names
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    for kind in ("stacked", "lstm"):
        st = board_python(script, "selftest", bundles[kind], cwd=tmp_path)
        assert st.returncode == 0, st.stdout + st.stderr
        report = tmp_path / f"{kind}.json"
        pl = board_python(script, "play", bundles[kind], "--max-steps", "200", "--report", report, cwd=tmp_path)
        assert pl.returncode == 0, pl.stdout + pl.stderr
        assert json.loads(report.read_text())["steps"] == 200


def test_board_install_has_no_torch_to_import(board_python, tmp_path):
    run = board_python("-c", "import torch", cwd=tmp_path)
    assert run.returncode != 0 and "No module named 'torch'" in run.stderr
    assert importlib.util.find_spec("torch") is not None  # this host has it; the board's venv does not


CHECK_MANY = """
import json, runpy, sys
codes = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["device", *argv]
    try:
        runpy.run_module("device", run_name="__main__")
        codes.append(0)
    except SystemExit as done:
        codes.append(done.code)
assert "torch" not in sys.modules, "torch was imported"
host_side = {"torchrl", "tensordict", "onnx", "host"}
assert not any(m.split(".")[0] in host_side for m in sys.modules), "host modules imported"
print(json.dumps(codes))
"""
"""Several device commands in one board process: what a board pays once (numpy, onnxruntime, ale-py) paid once."""


def test_own_policies_self_test_and_play_without_torch(board_python, own_bundles, tmp_path):
    script = tmp_path / "check_many.py"
    script.write_text(CHECK_MANY)
    calls = []
    for bundle in own_bundles.values():
        calls.append(["selftest", str(bundle)])
        if json.loads((bundle / "manifest.json").read_text())["env"] is not None:  # no game: the user's loop (below)
            calls.append(["play", str(bundle), "--max-steps", "100", "--quiet"])
    ran = board_python(script, json.dumps(calls), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    codes = json.loads(ran.stdout.strip().splitlines()[-1])
    assert codes == [0] * len(calls), list(zip(calls, codes, strict=False))
    assert ran.stdout.count(": ok") == sum(c[0] == "selftest" for c in calls), ran.stdout


def test_the_runtime_api_runs_a_sensor_policy_in_a_users_loop(board_python, own_bundles, tmp_path):
    loop = tmp_path / "loop.py"
    loop.write_text(
        "import sys, numpy as np\n"
        "from device import Policy\n"
        "p = Policy.load(sys.argv[1])\n"
        "p.reset()\n"
        "first = [p.act(np.full(32, 0.5, dtype=np.float32)) for _ in range(3)]\n"
        "p.reset()\n"
        "again = p.act(np.full(32, 0.5, dtype=np.float32))\n"
        "assert np.array_equal(first[0], again), 'reset did not restart the episode'\n"
        "assert not np.array_equal(first[0], first[2]), 'state was not carried'\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok', first[0].shape)\n"
    )
    run = board_python(loop, own_bundles["tutorial_lstm"], cwd=tmp_path)
    assert run.returncode == 0 and "ok (5,)" in run.stdout, run.stdout + run.stderr
