"""A user brings their own TorchRL policy and env; edgerl turns it into a bundle that verifies and plays."""

import json
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[2]))
import in_process  # noqa: E402
from campaign import trials  # noqa: E402
from tests_own import OWN_POLICIES, REPO, VERIFY_STEPS, backends_of, export_from  # noqa: E402

from device import Policy  # noqa: E402
from device.manifest import load_bundle  # noqa: E402

GAMES = {"breakout_stacked": "breakout", "invaders_actor": "space_invaders"}


@pytest.mark.campaign  # every backend, AOTInductor included, under `make campaigns`
@pytest.mark.parametrize("name", OWN_POLICIES)
def test_an_unseen_policy_verifies_on_every_backend_against_the_eager_one(own_bundles, name):
    manifest = load_bundle(own_bundles[name])
    parity = manifest.parity
    assert parity["ok"] and parity["reference"] == "eager" and parity["frames"] == VERIFY_STEPS
    assert parity["episode_starts"] >= 2
    assert set(parity["backends"]) == backends_of(name), manifest.backends["aoti"]
    for figures in parity["backends"].values():
        assert figures["action_agreement"] == 1.0
        assert figures["max_abs_diff_values"] <= 1e-4 and figures["max_abs_diff_state"] <= 1e-4


@pytest.mark.parametrize("name", OWN_POLICIES)
def test_the_bundle_reads_the_game_its_stack_and_its_actions_from_the_env(own_bundles, name):
    sys.path.insert(0, str(REPO))
    module = __import__(f"examples.{name}", fromlist=["make_env"])
    env = module.make_env()
    ale = env.base_env._env.unwrapped
    manifest = load_bundle(own_bundles[name])
    assert manifest.env.game == GAMES[name]
    assert manifest.env.frame_skip == ale._frameskip
    assert manifest.env.repeat_action_probability == pytest.approx(ale.ale.getFloat("repeat_action_probability"))
    assert manifest.action_ids == [a.value for a in ale._action_set]
    assert manifest.observations == ["pixels"] and manifest.episode_start_input == "is_init"
    (stack,) = manifest.state
    stacked = env.reset()[("obs" if name == "breakout_stacked" else "screen")]
    assert stack.shape == list(stacked.shape)
    action = next(t for t in manifest.outputs if t.name == "action")
    assert action.shape == [] and action.dtype == "int64"  # one-hot in TorchRL, an index on the board


@pytest.mark.parametrize("name", OWN_POLICIES)
def test_the_board_loop_plays_what_torchrl_would_play(own_bundles, name):
    """The device's Policy on raw ALE screens chooses what the eager policy chooses in the user's env."""
    import torch
    from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp

    sys.path.insert(0, str(REPO))
    module = __import__(f"examples.{name}", fromlist=["make"])
    actor, env = module.make()
    board = Policy.load(own_bundles[name])
    env.set_seed(7)
    td = env.reset()
    board.reset()
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(300):
            screen = env.base_env._env.unwrapped.ale.getScreenRGB()
            td = actor(td)
            assert board.act(screen) == int(td["action"].argmax())
            td = env.step(td)
            if td["next", "done"].item():
                break
            td = step_mdp(td)


def test_the_tutorials_recurrent_policy_steps_on_the_board_as_torchrl_steps_it(own_bundles):
    """1,000 steps: TorchRL carries hidden0/hidden1 with step_mdp and sets is_init; device.Policy does the same."""
    import torch
    from tensordict import TensorDict
    from torchrl.envs.utils import step_mdp

    sys.path.insert(0, str(REPO))
    from examples.tutorial_lstm import make_policy

    policy = make_policy()
    board = Policy.load(own_bundles["tutorial_lstm"])
    rng = torch.Generator().manual_seed(0)
    worst = 0.0
    for step in range(1000):
        if step % 250 == 0:
            td = TensorDict({"hidden0": torch.zeros(2, 256), "hidden1": torch.zeros(2, 256),
                             "is_init": torch.ones((), dtype=torch.bool)}, [])
            board.reset()
        td["observation"] = torch.randn(32, generator=rng)
        with torch.no_grad():
            out = policy(td.clone())
        got = board.act(td["observation"].numpy())
        worst = max(worst, float(np.abs(got - out["action"].numpy()).max()))
        # TorchRL's own stepping: the states the policy wrote become the next step's, the episode goes on.
        out.set("next", out.select("hidden0", "hidden1").clone())
        td = step_mdp(out)
        td["is_init"] = torch.zeros((), dtype=torch.bool)
    assert worst <= 1e-4, worst


def test_the_recurrent_bundle_declares_its_states_and_needs_no_game(own_bundles):
    manifest = load_bundle(own_bundles["tutorial_lstm"])
    assert manifest.env is None and manifest.action_ids == []
    assert [(p.input, p.shape) for p in manifest.state] == [("hidden0", [2, 256]), ("hidden1", [2, 256])]
    assert manifest.episode_start_input == "is_init"
    assert next(t for t in manifest.outputs if t.name == "action").shape == [5]
    assert manifest.parity["ok"] and manifest.parity["episode_starts"] >= 2
    assert set(manifest.parity["backends"]) == backends_of("tutorial_lstm")
    play = subprocess.run([sys.executable, "-m", "device", "play", str(own_bundles["tutorial_lstm"])],
                          capture_output=True, text=True)
    assert play.returncode == 2 and "no game to play" in play.stderr and "Traceback" not in play.stderr


def test_verify_rebuilds_the_eager_policy_from_the_factory(own_bundles, tmp_path):
    import shutil

    bundle = shutil.copytree(own_bundles["tutorial_lstm"], tmp_path / "b")
    run = in_process.edgerl("verify", bundle, "--frames", 300, "--from", "examples/tutorial_lstm.py:make", cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert "reference eager" in run.stdout and load_bundle(bundle).parity["reference"] == "eager"
    wrong = in_process.edgerl("verify", bundle, "--frames", 50, "--from", "examples/breakout_stacked.py:make",
                              cwd=REPO)
    assert wrong.returncode == 1 and "the bundle has" in wrong.stderr


@pytest.mark.campaign  # the LSTM tutorial's script under `make campaigns` (its policy's export, verify and board
# steps are test_the_tutorials_recurrent_policy_steps_on_the_board_as_torchrl_steps_it's, in the tiers)
@pytest.mark.parametrize("script", ["tutorial_dqn", "tutorial_lstm"][:trials(1, 2)])
def test_the_tutorial_examples_run_end_to_end(script, tmp_path, device_venv):
    extra = ["--train-frames", "64"] if script == "tutorial_dqn" else []
    # The run's board venv, as a board that ran edgerl before has one (test_deploy_local.py installs a fresh one).
    (tmp_path / "board").mkdir()
    (tmp_path / "board" / "venvs").symlink_to(device_venv.venvs)
    run = subprocess.run([sys.executable, f"examples/{script}.py", "--out", str(tmp_path), *extra],
                         capture_output=True, text=True, cwd=REPO, timeout=900,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "verify ok" in run.stdout and "selftest" in run.stdout and "board's current release" in run.stdout
    status = json.loads((tmp_path / "board" / "current" / "bundle" / "manifest.json").read_text())
    assert status["parity"]["ok"]
    if script == "tutorial_dqn":
        assert "steps/s" in run.stdout  # it played on the board
        assert status["env"]["frame_skip"] == 1  # the tutorial's GymEnv has no frame skip


def test_refusals_are_one_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import torch\nfrom torch import nn\nfrom tensordict import TensorDict\n"
        "from tensordict.nn import TensorDictModule\n"
        "from torchrl.envs import GymEnv, TransformedEnv, FrameSkipTransform\n"
        "def pool():\n"
        "    net = nn.Sequential(nn.Unflatten(-1, (1, 5, 5)), nn.AdaptiveMaxPool2d(3), nn.Flatten(-3))\n"
        "    return TensorDictModule(net, ['observation'], ['action']), None, TensorDict(observation=torch.randn(25))\n"
        "def skip():\n"
        "    env = TransformedEnv(GymEnv('ALE/Pong-v5', categorical_action_encoding=True), FrameSkipTransform(2))\n"
        "    return TensorDictModule(nn.Identity(), ['pixels'], ['action']), env\n"
        "def nothing():\n"
        "    return 3\n"
    )
    cases = {"pool": "aten.adaptive_max_pool2d", "skip": "FrameSkipTransform", "nothing": "must return",
             "missing": "no function missing"}
    for func, words in cases.items():
        run = export_from(f"{bad}:{func}", tmp_path / func, "--no-aoti")
        assert run.returncode == 2, run.stdout + run.stderr
        last = run.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and words in last and "Traceback" not in run.stderr, run.stderr
        assert not (tmp_path / func).exists()
