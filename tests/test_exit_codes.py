"""Both command lines speak one exit-code table: a script can tell a failed check from bad input on either side."""

import subprocess
import sys

from device.manifest import EXIT_BAD_INPUT, EXIT_CODES_HELP, EXIT_FAILED_CHECK


def run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def _tamper(bundle):
    with open(bundle / "policy.onnx", "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\xff" * 8)


def test_a_bad_checksum_is_a_failed_check_on_the_board_and_on_the_host(bundle_copy):
    bundle = bundle_copy()
    _tamper(bundle)
    board, host = run("device", "selftest", bundle), run("host.cli", "verify", bundle)
    assert board.returncode == host.returncode == EXIT_FAILED_CHECK == 1, board.stderr + host.stderr
    for done in (board, host):
        assert "policy.onnx" in done.stderr and "sha256" in done.stderr and "Traceback" not in done.stderr


def test_a_missing_bundle_is_bad_input_in_both_command_lines(tmp_path):
    for done in (run("device", "selftest", tmp_path / "nope"), run("host.cli", "verify", tmp_path / "nope")):
        assert done.returncode == EXIT_BAD_INPUT == 2, done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith("error: ") and "does not exist" in done.stderr


def test_the_table_is_in_every_help():
    helps = [run("device", "--help"), run("device", "selftest", "--help"), run("host.cli", "--help")]
    helps += [run("host.cli", cmd, "--help") for cmd in ("export", "verify", "deploy", "run", "train")]
    for done in helps:
        assert done.returncode == 0
        assert " ".join(EXIT_CODES_HELP.split()) in " ".join(done.stdout.split()), done.args
