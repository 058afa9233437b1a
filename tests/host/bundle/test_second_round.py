"""A user brings a GRU pixel policy, a VecNorm + TanhNormal continuous policy and a camera + joints robot policy.

Each goes through `edgerl export --from` with every backend (the own_bundles
fixture), `edgerl verify --from`, the board's self-test (torch-free in
tests/device/test_torch_free.py) and, for the game, `python -m device play`;
here the board's `device.Policy` is held to what TorchRL itself computes.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import in_process  # noqa: E402
from tests_own import REPO, SECOND_ROUND, backends_of, export_from  # noqa: E402

from device import Policy  # noqa: E402
from device.manifest import load_bundle  # noqa: E402
from device.policy import PolicyError  # noqa: E402
from device.selftest import selftest  # noqa: E402


def _module(name: str):  # noqa: ANN202
    sys.path.insert(0, str(REPO))
    return __import__(f"examples.{name}", fromlist=["make"])


@pytest.mark.campaign  # every backend, AOTInductor included, under `make campaigns`
@pytest.mark.parametrize("name", SECOND_ROUND)
def test_each_exports_verifies_on_every_backend_and_verify_rebuilds_it(own_bundles, name, tmp_path):
    import shutil

    manifest = load_bundle(own_bundles[name])
    assert manifest.parity["ok"] and set(manifest.parity["backends"]) == backends_of(name)
    for figures in manifest.parity["backends"].values():
        assert figures["action_agreement"] == 1.0
        assert figures["max_abs_diff_values"] <= 1e-4 and figures["max_abs_diff_state"] <= 1e-4
    bundle = shutil.copytree(own_bundles[name], tmp_path / "b")
    run = in_process.edgerl("verify", bundle, "--frames", 300, "--from", f"examples/{name}.py:make", cwd=REPO,
                            timeout=600)
    assert run.returncode == 0 and "reference eager" in run.stdout, run.stdout + run.stderr


def test_a_gru_pixel_policy_plays_on_the_board_as_torchrl_steps_it(own_bundles):
    """Boxing, 400 steps across an episode start: TorchRL's GRUModule carries `memory`, device.Policy does too."""
    import torch
    from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp

    actor, env = _module("boxing_gru").make()
    board = Policy.load(own_bundles["boxing_gru"])
    manifest = board.manifest
    assert manifest.env.game == "boxing" and [p.input for p in manifest.state] == ["memory"]
    assert manifest.episode_start_input == "is_init" and manifest.action.kind == "discrete"
    env.set_seed(3)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for segment in range(2):
            td = env.reset()
            board.reset()
            for _ in range(200):
                screen = env.base_env._env.unwrapped.ale.getScreenRGB()
                td = actor(td)
                assert board.act(screen) == int(td["action"]), f"segment {segment}"
                td = step_mdp(env.step(td))
    play = subprocess.run([sys.executable, "-m", "device", "play", str(own_bundles["boxing_gru"]), "--max-steps",
                           "300"], capture_output=True, text=True, timeout=300)
    assert play.returncode == 0 and "score" in play.stdout, play.stderr


def test_the_users_lazy_gru_policy_on_freeway_verifies_exactly_self_tests_torch_free_and_plays(own_bundles):
    """The factory a user brought as it was (issue 37): it once agreed with its eager self on 0.8 % of actions."""
    manifest = load_bundle(own_bundles["freeway_gru"])
    for figures in manifest.parity["backends"].values():
        assert figures["action_agreement"] == 1.0, figures
        assert figures["max_abs_diff_values"] <= 1e-4 and figures["max_abs_diff_state"] <= 1e-4, figures
    assert manifest.env.game == "freeway" and manifest.episode_start_input == "is_init"
    assert selftest(own_bundles["freeway_gru"]).ok
    play = subprocess.run([sys.executable, "-m", "device", "play", str(own_bundles["freeway_gru"]), "--max-steps",
                           "200"], capture_output=True, text=True, timeout=300)
    assert play.returncode == 0 and "score" in play.stdout, play.stderr


def test_a_gru_sensor_policy_carries_its_state_and_resets_as_torchrl_does(tmp_path):
    """1,000 steps with an episode start every 250: the exported GRU against TorchRL's own stepping."""
    import torch
    from policy_matrix import CASES
    from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp

    from host.bundle.export import ExportOptions
    from host.bundle.pipeline import export_policy

    policy, env = CASES["GRUModule (python-based)"]()
    bundle = export_policy(policy, env, tmp_path / "b", options=ExportOptions(aoti=False, verify_steps=300),
                           say=lambda _: None)
    board = Policy.load(bundle)
    env.set_seed(1)
    worst = 0.0
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for step in range(1000):
            if step % 250 == 0:
                td = env.reset()
                board.reset()
            td = policy(td)
            out = board.step(td["observation"].numpy())
            worst = max(worst, float(np.abs(out["action_value"] - td["action_value"].numpy()).max()))
            assert int(out["action"]) == int(td["action"])
            td = step_mdp(env.step(td))
            if td["done"].item():
                td = env.reset()
                board.reset()
    assert worst <= 1e-4, worst


def test_vecnorm_is_baked_as_the_affine_map_it_applies_and_recorded(own_bundles):
    _, env = _module("pendulum_tanh").make()
    vecnorm = env.transform[0]
    loc, scale = vecnorm._get_loc_scale()
    (record,) = load_bundle(own_bundles["pendulum_tanh"]).provenance["normalization"]
    assert record["transform"] == "VecNormV2" and record["eps"] == pytest.approx(vecnorm.eps)
    assert np.allclose(record["loc"], loc["observation"].numpy(), rtol=0, atol=0)
    assert np.allclose(record["scale"], scale["observation"].numpy(), rtol=0, atol=0)


def test_exporting_an_unfrozen_vecnorm_leaves_it_unfrozen(tmp_path):
    from policy_matrix import CASES

    from host.bundle.export import ExportOptions
    from host.bundle.pipeline import export_policy

    policy, env = CASES["VecNorm (v1)"]()
    vecnorm = next(t for t in env.transform if type(t).__name__ == "VecNorm")
    assert not vecnorm.frozen
    export_policy(policy, env, tmp_path / "b", options=ExportOptions(aoti=False, verify_steps=100),
                  say=lambda _: None)
    assert not vecnorm.frozen, "export froze the user's VecNorm for good"


def test_a_continuous_bundle_carries_its_bounds_and_the_board_never_returns_an_action_outside_them(own_bundles):
    import torch
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    actor, env = _module("pendulum_tanh").make()
    board = Policy.load(own_bundles["pendulum_tanh"])
    spec = board.manifest.action
    assert (spec.kind, spec.low, spec.high) == ("continuous", [-2.0], [2.0])
    env.set_seed(5)
    td = env.reset()
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(200):
            raw = env.base_env._env.unwrapped.state  # the board's sensors: the raw observation
            obs = np.array([np.cos(raw[0]), np.sin(raw[0]), raw[1]], dtype=np.float32)
            action = board.act(obs)
            assert -2.0 <= float(action[0]) <= 2.0
            assert float(action[0]) == pytest.approx(float(actor(td)["action"][0]), abs=1e-4)
            td = env.step(td.set("action", torch.as_tensor(action)))["next"]


def test_a_model_that_commands_beyond_the_bounds_is_refused_in_one_line(tmp_path):
    """A deterministic actor with a gain far too high for Pendulum's +-2 torque."""
    factory = tmp_path / "strong.py"
    factory.write_text(
        "import torch\nfrom torch import nn\nfrom tensordict.nn import TensorDictModule\n"
        "from torchrl.envs import GymEnv\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    net = nn.Linear(3, 1)\n"
        "    nn.init.constant_(net.weight, 40.0)\n"
        "    return TensorDictModule(net, ['observation'], ['action']), GymEnv('Pendulum-v1')\n")
    run = export_from(f"{factory}:make", tmp_path / "b", "--no-aoti", "--verify-frames", "100")
    assert run.returncode == 0, run.stderr  # every backend agrees: the model is faithful, and wrong
    st = selftest(tmp_path / "b")
    assert not st.ok and "outside [-2, 2] of its action spec" in " ".join(st.problems)
    board = Policy.load(tmp_path / "b")
    with pytest.raises(PolicyError) as refused:
        board.act(np.array([1.0, 0.0, 0.5], dtype=np.float32))
    assert "\n" not in str(refused.value) and "outside [-2, 2]" in str(refused.value)
    clipped = Policy.load(tmp_path / "b", clip=True).act(np.array([1.0, 0.0, 0.5], dtype=np.float32))
    assert float(clipped[0]) == 2.0


def test_a_two_observation_policy_takes_its_observations_by_name(own_bundles):
    import torch

    actor, env = _module("two_sensors").make()
    board = Policy.load(own_bundles["two_sensors"])
    assert board.manifest.observations == ["camera", "joints"]
    env.set_seed(2)
    td = env.reset()
    with torch.no_grad():
        for _ in range(50):
            # The transforms add image and joints_n beside them: camera and joints are what the sensors gave.
            action = board.act({"camera": td["camera"].numpy(), "joints": td["joints"].numpy()})
            expected = actor(td)["action"].numpy()
            assert np.abs(action - expected).max() <= 1e-4
            td = env.step(td.set("action", torch.as_tensor(action)))["next"]
    with pytest.raises(PolicyError, match="pass a dict with"):
        board.act(np.zeros((32, 32, 3), dtype=np.uint8))
    with pytest.raises(PolicyError, match="observation 'joints' is missing"):
        board.act({"camera": np.zeros((32, 32, 3), dtype=np.uint8)})
