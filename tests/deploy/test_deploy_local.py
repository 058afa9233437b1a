"""The embedded default: a board folder on this machine, same release logic as SSH."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import in_process

from device.manifest import EXIT_INTERRUPTED, load_bundle
from host.data import load_episodes
from host.policies import PolicyConfig, build_env


def edgerl(*args, env=None):
    return in_process.edgerl(*args, env=env, timeout=600)


def test_local_board_deploy_run_record_pull_status_rollback(bundles, tmp_path, ssh_world):
    board = tmp_path / "board"
    board.mkdir()
    (board / "venvs").symlink_to(ssh_world.venvs)
    env = ssh_world.env()
    first = edgerl("deploy", bundles["dqn"], "--to", f"local:{board}", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    second = edgerl("deploy", bundles["stacked"], "--to", f"local:{board}", env=env)
    assert second.returncode == 0 and "venv reused" in second.stdout
    run = edgerl("run", "--on", f"local:{board}", "--max-steps", 50, "--reports", tmp_path / "r", "--record", "games",
                 env=env)
    assert run.returncode == 0, run.stderr
    assert "steps/s" in run.stdout
    # The game played there comes home as the stacked policy's own env would have played it.
    pulled = edgerl("data", "pull", "--on", f"local:{board}", "--out", tmp_path / "data", env=env)
    assert pulled.returncode == 0, pulled.stderr
    report = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    spec = load_bundle(bundles["stacked"]).env
    folder = next((tmp_path / "data").iterdir()) / "games"
    games = load_episodes(folder, build_env(PolicyConfig(network="stacked"), spec), keys=["action", "pixels_trsf"])
    assert games["action"].tolist() == list(bytes.fromhex(report["episodes"][0]["actions_hex"]))
    assert games["pixels_trsf"].shape == (50, 4, 84, 84)
    status = json.loads(edgerl("status", "--on", f"local:{board}", env=env).stdout)
    assert status["current"].startswith("stacked-") and status["previous"].startswith("dqn-")
    assert edgerl("rollback", "--on", f"local:{board}", env=env).returncode == 0
    assert json.loads(edgerl("status", "--on", f"local:{board}", env=env).stdout)["current"].startswith("dqn-")


def test_deploying_a_tampered_bundle_touches_no_board(bundle_copy, tmp_path):
    bundle = bundle_copy("dqn")
    (bundle / "golden.npz").write_bytes(b"x")
    board = tmp_path / "board"
    run = edgerl("deploy", bundle, "--to", f"local:{board}")
    assert run.returncode == 1 and "golden.npz" in run.stderr and "sha256" in run.stderr
    assert not board.exists()


def _running(board: Path, what: str) -> bool:
    """Whether a process of this board (its folder in the command line) is running `what`."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if what.encode() in words and any(str(board).encode() in w for w in words):
            return True
    return False


def ctrl_c_during(bundle: Path, board: Path, env: dict, step: str) -> tuple[int, str, str]:
    """`edgerl deploy` as a terminal's foreground job, Ctrl-C'd once the board runs `step`: (exit, out, err)."""
    proc = subprocess.Popen([sys.executable, "-m", "host.cli", "deploy", str(bundle), "--to", f"local:{board}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # its own group, as a terminal's foreground job
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not _running(board, step):
        assert time.monotonic() < deadline and proc.poll() is None, f"{step} never started"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_ctrl_c_at_the_terminal_during_a_local_deploy_says_interrupted_and_blames_nothing(bundles, tmp_path,
                                                                                         ssh_world):
    # Ctrl-C at a terminal signals the whole foreground process group: the board's own step was killed with
    # a traceback, which the deploy then reported as the board's failure.
    board = tmp_path / "board"
    board.mkdir()
    (board / "venvs").symlink_to(ssh_world.venvs)
    assert edgerl("deploy", bundles["dqn"], "--to", f"local:{board}", env=ssh_world.env()).returncode == 0
    code, out, err = ctrl_c_during(bundles["stacked"], board, ssh_world.env(), "selftest")
    assert code == EXIT_INTERRUPTED, out + err
    assert "interrupted before the switch (the self-test had passed)" in out + err, out + err  # where it stopped
    assert "Traceback" not in out + err
    assert "self-test failed" not in out + err
    status = json.loads(edgerl("status", "--on", f"local:{board}", env=ssh_world.env()).stdout)
    assert status["current"].startswith("dqn-") and status["locked"] is False


def test_ctrl_c_while_a_new_board_builds_its_venv_leaves_nothing_status_calls_a_venv(bundles, tmp_path, ssh_world):
    # A first deploy to a board builds its venv with pip (a minute on a Pi); the user gives up half-way.
    board = tmp_path / "board"
    code, out, err = ctrl_c_during(bundles["dqn"], board, ssh_world.env(), "pip")
    assert code == EXIT_INTERRUPTED, out + err
    assert err.strip().splitlines()[-1].endswith("interrupted before the switch (installing the venv); it had no "
                                                 "release before, and nothing was switched (a rerun resumes what "
                                                 "was uploaded)"), err
    for blame in ("Traceback", "python3-venv", "no internet", "failed on"):
        assert blame not in out + err, out + err
    status = json.loads(edgerl("status", "--on", f"local:{board}", env=ssh_world.env()).stdout)
    assert status["venvs"] == [] and status["current"] is None and status["locked"] is False, status
    assert list((board / "venvs").iterdir()), "the half-built venv is on disk, for the next deploy to replace"


def test_the_reports_edgerl_run_writes_by_default_are_not_offered_to_git():
    # `edgerl run` without --reports writes into ./reports: in a checkout of edgerl, git leaves them alone.
    repo = Path(__file__).resolve().parents[2]
    assert "/reports/" in (repo / ".gitignore").read_text().splitlines()


def test_a_deploy_whose_reader_went_away_finishes_its_work_without_a_traceback(bundles, tmp_path, ssh_world):
    """`edgerl deploy ... | head -1`: the reader leaves early; the deploy still switches, and says nothing odd."""
    board = tmp_path / "board"
    board.mkdir()
    (board / "venvs").symlink_to(ssh_world.venvs)
    line = (f"{shlex.quote(sys.executable)} -m host.cli deploy {shlex.quote(str(bundles['dqn']))} --to "
            f"{shlex.quote(f'local:{board}')} | true; exit ${{PIPESTATUS[0]}}")  # `true` reads nothing and leaves
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert (board / "current" / ".verified").is_file()


def test_deploy_service_to_a_board_without_systemd_names_a_foreground_command_that_runs(cart_bundle, device_venv,
                                                                                          tmp_path):
    import shutil

    board = tmp_path / "board"
    board.mkdir()
    (board / "venvs").symlink_to(device_venv.venvs)
    plant = Path(__file__).resolve().parents[2] / "examples" / "cart_io.py"
    refused = in_process.edgerl("deploy", cart_bundle, "--to", f"local:{board}", "--service", "--io",
                                f"{plant}:Cart", "--hz", "20")
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert "does not run systemd" in lines[0] and "deploy without --service" in lines[0]
    said, _, copy = lines[0].split("in the foreground there: ", 1)[1].partition(" (copy ")
    assert said.endswith("-m device serve current --io cart_io.py:Cart --hz 20") and copy.startswith("cart_io.py")
    assert not (board / "current").exists()  # refused before anything was uploaded

    # Done as it says: deployed without --service, the plant copied there, the command runs the loop.
    assert in_process.edgerl("deploy", cart_bundle, "--to", f"local:{board}").returncode == 0
    shutil.copy(plant, board / "cart_io.py")
    served = subprocess.run(["bash", "-c", f"{said} --seconds 1 --status {tmp_path / 'status.json'}"],
                            capture_output=True, text=True, timeout=120)
    assert served.returncode == 0, served.stderr
    assert json.loads((tmp_path / "status.json").read_text())["decisions"] >= 10
