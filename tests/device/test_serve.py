"""A user runs the policy as a fixed-rate loop on the board: the game in real time, or their own plant."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import in_process
import pytest

from device.manifest import EXIT_BAD_INPUT, EXIT_LOOP_FAILED
from device.rate import Ticker, steal_ms

REPO = Path(__file__).resolve().parents[2]
STATUS_KEYS = {"target_hz", "achieved_hz", "decisions", "overruns", "period_ms", "phase_ms", "release"}


def serve(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "device", "serve", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def plant(tmp_path: Path, body: str, name: str = "plant.py") -> str:
    """A user's I/O class file; its close() leaves closed.txt so the test can see the machine was made safe."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(f"""
        import time
        from pathlib import Path
        import numpy as np

        CLOSED = Path({str(tmp_path / "closed.txt")!r})

        class Plant:
            def __init__(self):
                self.calls = 0

            def close(self):
                CLOSED.write_text("motor off")
    """) + textwrap.indent(textwrap.dedent(body), "    "))
    return f"{path}:Plant"


@pytest.mark.alone  # its rate within 2 %, its period p50 within 2 ms
def test_a_game_bundle_serves_in_the_games_real_time_and_tells_systemd(bundles, tmp_path):
    # 8 s (120 periods): this VM once woke the loop 133 ms late with no overrun of its own (2 periods skipped,
    # 14.49 Hz over 4 s, stop 30); one such stall is 1.7 % of 8 s, two still fail the 2 % bound.
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "3000000", "PATH": "/usr/bin:/bin"}
    status = tmp_path / "status.json"
    stolen_before = steal_ms()
    proc = subprocess.Popen([sys.executable, "-m", "device", "serve", str(bundles["stacked"]), "--seconds", "8",
                             "--status", str(status)], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    messages = []
    try:  # STOPPING=1 is the loop's last word: waiting on after it for the process's exit cost the socket's 10 s
        while messages[-1:] != ["STOPPING=1"]:
            messages.append(notify.recv(4096).decode())
    except TimeoutError:  # a loop that died without it: its exit status says why, below
        pass
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    stolen_ms = steal_ms() - stolen_before
    assert messages[0].startswith("READY=1"), messages
    assert sum(m.startswith("WATCHDOG=1") for m in messages) >= 3  # at least every WatchdogSec / 3
    figures = json.loads(status.read_text())
    assert STATUS_KEYS <= set(figures) and figures["state"] == "stopped"
    assert figures["target_hz"] == 15.0  # Pong v5: 60 frames/s over a frame skip of 4
    # The floor beside the figure: what the machine took from the loop in the same 8 s, named when it fails.
    floor = {k: figures[k] for k in ("overruns", "skipped_periods", "late_wakes", "worst_wake_late_ms",
                                     "late_iterations", "worst_report_ms", "period_ms")}
    floor["vm_steal_ms"] = stolen_ms
    floor = f"{figures['achieved_hz']} Hz, {figures['decisions']} decisions; {floor}"  # a string: shown whole
    assert abs(figures["achieved_hz"] / 15.0 - 1) < 0.02, floor
    assert 118 <= figures["decisions"] <= 122, floor
    # Absolute deadlines: every period of the window was either decided or counted as skipped, none run twice.
    assert 119 <= figures["decisions"] + figures["skipped_periods"] <= 121, floor
    assert set(figures["phase_ms"]) == {"observe", "infer", "apply"}
    assert figures["period_ms"]["p50"] == pytest.approx(1000 / 15, abs=2)
    assert figures["release"] == str(bundles["stacked"].resolve()) and "scores" in figures


@pytest.mark.alone  # 50 Hz within 2 %
def test_a_sensor_policy_drives_the_users_plant_at_50_hz(cart_bundle, tmp_path):
    status = tmp_path / "status.json"
    done = serve(cart_bundle, "--io", "examples/cart_io.py:Cart", "--hz", 50, "--seconds", 3, "--status", status)
    assert done.returncode == 0, done.stderr
    figures = json.loads(status.read_text())
    assert abs(figures["achieved_hz"] / 50 - 1) < 0.02 and 148 <= figures["decisions"] <= 152
    # The PD law held the cart: pushed 1 m off at start, it is back at rest.
    assert abs(figures["io_status"]["position_m"]) < 0.01
    assert "cart: motor off" in done.stderr  # close() ran


def test_a_plant_that_raises_stops_the_loop_with_one_line_after_close(cart_bundle, tmp_path):
    io = plant(tmp_path, """
        def observe(self):
            return np.zeros(2, dtype=np.float32)

        def apply(self, action):
            self.calls += 1
            if self.calls == 5:
                raise RuntimeError("motor driver lost")
    """)
    status = tmp_path / "status.json"
    done = serve(cart_bundle, "--io", io, "--hz", 50, "--status", status)
    assert done.returncode == EXIT_LOOP_FAILED
    assert done.stderr.strip().splitlines()[-1] == ("error: your I/O class's apply() raised RuntimeError: motor "
                                                    "driver lost; the loop stopped after close()")
    assert (tmp_path / "closed.txt").read_text() == "motor off"
    figures = json.loads(status.read_text())
    assert figures["state"] == "failed" and figures["decisions"] == 4


def test_a_plant_that_blocks_is_stopped_after_close(cart_bundle, tmp_path):
    io = plant(tmp_path, """
        def observe(self):
            self.calls += 1
            if self.calls == 5:
                time.sleep(600)  # a sensor read that never returns
            return np.zeros(2, dtype=np.float32)

        def apply(self, action):
            pass
    """)
    started = time.monotonic()
    done = serve(cart_bundle, "--io", io, "--hz", 20)
    assert done.returncode == EXIT_LOOP_FAILED
    assert "error: observe() blocked for more than 1 s" in done.stderr
    assert time.monotonic() - started < 30
    assert (tmp_path / "closed.txt").read_text() == "motor off"


def test_a_non_finite_action_stops_the_loop(cart_bundle, tmp_path):
    io = plant(tmp_path, """
        def observe(self):
            return np.full(2, np.nan, dtype=np.float32)  # a sensor gone bad

        def apply(self, action):
            raise AssertionError("a NaN action must never reach the motor")
    """)
    done = serve(cart_bundle, "--io", io, "--hz", 50)
    assert done.returncode == EXIT_LOOP_FAILED
    assert "error: the policy failed: policy output 'action' contains NaN or inf" in done.stderr
    assert "AssertionError" not in done.stderr
    assert (tmp_path / "closed.txt").exists()


@pytest.fixture(scope="module")
def strong_bundle(tmp_path_factory) -> Path:
    """A deterministic Pendulum actor whose gain commands far beyond the env's +-2 torque."""
    root = tmp_path_factory.mktemp("strong")
    (root / "strong.py").write_text(
        "import torch\nfrom torch import nn\nfrom tensordict.nn import TensorDictModule\n"
        "from torchrl.envs import GymEnv\n"
        "def make():\n"
        "    net = nn.Linear(3, 1)\n"
        "    nn.init.constant_(net.weight, 40.0)\n"
        "    return TensorDictModule(net, ['observation'], ['action']), GymEnv('Pendulum-v1')\n")
    run = in_process.edgerl("export", "--from", f"{root / 'strong.py'}:make", "--out", root / "bundle", "--no-aoti",
                            "--verify-frames", 50, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr
    return root / "bundle"


def test_an_action_beyond_its_bounds_never_reaches_the_motor(strong_bundle, tmp_path):
    io = plant(tmp_path, """
        def observe(self):
            return np.array([1.0, 0.0, 0.5], dtype=np.float32)

        def apply(self, action):
            raise AssertionError(f"{action} is beyond the motor's +-2 and must never be sent")
    """)
    done = serve(strong_bundle, "--io", io, "--hz", 50)
    assert done.returncode == EXIT_LOOP_FAILED
    assert "outside [-2, 2] of its action spec" in done.stderr and "AssertionError" not in done.stderr
    assert (tmp_path / "closed.txt").exists()


def test_clip_actions_sends_the_bound_instead(strong_bundle, tmp_path):
    io = plant(tmp_path, """
        def observe(self):
            return np.array([1.0, 0.0, 0.5], dtype=np.float32)

        def apply(self, action):
            assert float(action[0]) == 2.0, action
            self.calls += 1
    """)
    done = serve(strong_bundle, "--io", io, "--hz", 50, "--seconds", 1, "--clip-actions")
    assert done.returncode == 0, done.stderr


def test_sigterm_stops_the_loop_cleanly_through_close(cart_bundle, tmp_path):
    io = plant(tmp_path, """
        def observe(self):
            return np.zeros(2, dtype=np.float32)

        def apply(self, action):
            pass
    """)
    status = tmp_path / "status.json"
    proc = subprocess.Popen([sys.executable, "-m", "device", "serve", str(cart_bundle), "--io", io, "--hz", "50",
                             "--status", str(status)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    for _ in range(300):
        if status.is_file() and json.loads(status.read_text()).get("state") == "running":
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    assert json.loads(status.read_text())["state"] == "stopped by SIGTERM"
    assert (tmp_path / "closed.txt").exists()


@pytest.mark.parametrize(("io", "message"), [
    ("nowhere.py:Plant", "--io: no file nowhere.py"),
    ("examples/cart_io.py:Bicycle", "--io: examples/cart_io.py has no class 'Bicycle'"),
    ("examples/cart_io.py", "--io wants FILE.py:CLASS"),
])
def test_a_wrong_io_class_is_one_line_and_bad_input(cart_bundle, tmp_path, io, message):
    status = tmp_path / "status.json"
    done = serve(cart_bundle, "--io", io, "--hz", 50, "--status", status)
    assert done.returncode == EXIT_BAD_INPUT
    assert done.stderr.strip().splitlines()[-1].startswith("error: " + message), done.stderr
    # A supervisor's health check reads why the loop did not start.
    assert json.loads(status.read_text())["state"] == "failed"


@pytest.mark.parametrize(("flags", "message"), [
    (("--hz", "0"), "argument --hz: must be a positive number, got 0"),
    (("--hz", "nan"), "argument --hz: must be a positive number, got nan"),
    (("--hz", "50", "--seconds", "-1"), "argument --seconds: must be a positive number, got -1"),
    (("--hz", "50", "--status", "{tmp}/no/such/status.json"), "argument --status: folder {tmp}/no/such does not exist"),
    (("--hz", "50", "--status", "{tmp}"), "argument --status: {tmp} is a folder"),
])
def test_a_rate_duration_or_status_file_serve_cannot_use_is_refused_before_the_loop(cart_bundle, tmp_path, flags,
                                                                                     message):
    # Each was accepted silently: --hz 0 read as "not given", --seconds -1 ran and exited 0, a status file in a
    # missing folder was never written (a health check saw nothing).
    flags = [f.format(tmp=tmp_path) for f in flags]
    done = serve(cart_bundle, "--io", "examples/cart_io.py:Cart", *flags)
    assert done.returncode == EXIT_BAD_INPUT
    assert message.format(tmp=tmp_path) in done.stderr.strip().splitlines()[-1], done.stderr
    assert "motor off" not in done.stderr  # refused before the plant was built


def test_what_a_power_cut_left_beside_the_status_file_is_removed_when_the_loop_starts(cart_bundle, tmp_path):
    status = tmp_path / "status.json"
    left = [tmp_path / ".status.json.4242", tmp_path / ".status.json.tmp"]  # an old release's name, and today's
    for stray in left:
        stray.write_text('{"state": "runn')
    done = serve(cart_bundle, "--io", "examples/cart_io.py:Cart", "--hz", 50, "--seconds", 0.5, "--status", status)
    assert done.returncode == 0, done.stderr
    assert json.loads(status.read_text())["state"] == "stopped"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_a_sensor_bundle_without_a_plant_or_rate_is_refused(cart_bundle):
    assert "pass --io FILE.py:CLASS" in serve(cart_bundle).stderr
    assert "pass --hz N" in serve(cart_bundle, "--io", "examples/cart_io.py:Cart").stderr


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_deadlines_are_absolute_and_missed_periods_are_skipped_not_bunched():
    clock = FakeClock()
    ticker = Ticker(10, clock, clock.sleep, spin_s=0)
    starts = []
    for k in range(6):
        starts.append(clock.now)
        clock.now += 0.35 if k == 2 else 0.013  # decision 2 overruns by 2.5 periods
        ticker.wait()
    # 0.0, 0.1, 0.2 on time; the overrun ends at 0.563, so 0.3, 0.4 and 0.5 are skipped; on at 0.6, 0.7, 0.8.
    assert starts == pytest.approx([0.0, 0.1, 0.2, 0.6, 0.7, 0.8])
    assert ticker.skipped == 3
    assert ticker.late_wakes == 0  # the skips were the loop's own overrun


def test_a_wake_up_the_kernel_delivers_late_is_counted_as_the_machines_stall():
    clock = FakeClock()
    ticker = Ticker(10, clock, clock.sleep, spin_s=0)
    oversleep = iter([0.0, 0.25, 0.0, 0.0])  # the second sleep returns 250 ms past its deadline

    def sleep(seconds):
        clock.now += seconds + next(oversleep)

    ticker._sleep = sleep
    starts = []
    for _ in range(4):
        starts.append(clock.now)
        clock.now += 0.01
        ticker.wait()
    # woken at 0.45 for the 0.2 deadline: decided then, and 0.3 and 0.4 are skipped.
    assert starts == pytest.approx([0.0, 0.1, 0.45, 0.5])
    assert (ticker.late_wakes, ticker.skipped, ticker.late_entries) == (1, 2, 1)
    assert ticker.worst_wake_late_s == pytest.approx(0.25)
