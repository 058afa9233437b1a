"""A user trains Pong with the fast PQN trainer: what it plays is what the board plays, and it resumes and ships."""

import campaign
import numpy as np
import pytest
import torch

from device.atari import AtariGame
from device.manifest import EnvSpec, load_bundle
from host.bundle.pipeline import ExportConfig, export_bundle
from host.envs import OBS_KEY, SCREEN_KEY, UnsupportedEnvError, action_table, make_base_env, preprocess
from host.train.pqn import PQNConfig, Rollout, q_lambda_targets
from host.train.trainer import train_pqn
from host.train.training_log import read_episodes, read_evaluations
from host.train.vector_games import VectorGames, episode_seed


def _device_game(spec, ids, run_seed, slot, episode):
    game = AtariGame(spec, ids)
    game.seed_ale(episode_seed(run_seed, slot, episode))
    game.reset()
    return game


@pytest.mark.campaign  # sticky actions in the tiers (the emulator's RNG in play); without them too in campaigns
@pytest.mark.parametrize("sticky", [0.0, 0.25] if campaign.FULL else [0.25])
def test_every_training_game_is_the_device_loops_game_for_the_same_seed_and_actions(sticky):
    # Two slots, several games each: screens, rewards and ends agree bit for bit, across episode boundaries.
    spec = EnvSpec(repeat_action_probability=sticky)
    ids, _ = action_table(make_base_env(spec))
    games = VectorGames(spec, 2, seed=5)
    boards = [_device_game(spec, ids, 5, slot, 0) for slot in range(2)]
    rng = np.random.default_rng(sticky > 0)
    ends = 0
    for step in range(2600):
        for slot, board in enumerate(boards):
            assert np.array_equal(games.screens[slot], board.screen), f"slot {slot} screens differ at step {step}"
        actions = rng.integers(0, len(ids), size=2)
        rewards, dones, _ = games.step(actions)
        for slot, board in enumerate(boards):
            result = board.step(int(actions[slot]))
            assert rewards[slot] == result.reward and dones[slot] == result.done, f"slot {slot} step {step}"
            if result.done:
                ends += 1
                boards[slot] = _device_game(spec, ids, 5, slot, int(games.episodes[slot]))
    assert ends >= 3, "the test must cross episode boundaries"


def test_training_frames_are_the_exported_graphs_frames(bundles):
    # The stacked graph returns its frame stack as a state: it must equal what the PQN trainer fed the network.
    from device import Policy

    policy = Policy.load(bundles["stacked"])
    (stack,) = [p.output for p in policy.manifest.state]
    games = VectorGames(EnvSpec(), 1, seed=3)
    pre = preprocess()
    rng = np.random.default_rng(0)
    for step in range(400):
        screen = games.screens[0].copy()
        graph_stack = policy.step(screen)[stack]
        assert np.array_equal(graph_stack, games.stack[0].numpy()), f"step {step}"
        full = pre(_td(screen))[OBS_KEY]
        assert torch.equal(full, games.stack[0, -1:]), f"step {step}: crop path differs from preprocess()"
        _, done, _ = games.step(rng.integers(0, 6, size=1))
        if done[0]:
            policy.reset()


def _td(screen):
    from tensordict import TensorDict

    return TensorDict({SCREEN_KEY: torch.from_numpy(screen)}, batch_size=[])


def test_q_lambda_targets_match_a_hand_computation():
    cfg = PQNConfig(envs=1, steps=4, gamma=0.9, lmbda=0.5)
    r = Rollout(obs=torch.zeros(4, 1, 4, 84, 84), actions=torch.zeros(4, 1, dtype=torch.int64),
                rewards=torch.tensor([[1.0], [0.0], [2.0], [0.5]]),
                dones=torch.tensor([[False], [True], [False], [False]]),
                values=torch.tensor([[9.0], [3.0], [5.0], [4.0], [7.0]]))
    got = q_lambda_targets(r, cfg.gamma, cfg.lmbda)[:, 0]
    g, lam = cfg.gamma, cfg.lmbda
    g3 = 0.5 + g * 7.0                                   # last step bootstraps on the extra observation
    g2 = 2.0 + g * ((1 - lam) * 4.0 + lam * g3)
    g1 = 0.0                                             # the game ended: no bootstrap, no recursion
    g0 = 1.0 + g * ((1 - lam) * 3.0 + lam * g1)
    torch.testing.assert_close(got, torch.tensor([g0, g1, g2, g3]))


TINY = dict(envs=2, steps=16, minibatches=2, epochs=1, eval_games=1, eval_max_steps=500, checkpoint_minutes=100)
"""An untrained net's evaluation game would go on for thousands of decisions; 500 show it is played and scored."""


def test_pqn_short_run_evaluates_resumes_exports_and_the_bundle_verifies(tmp_path):
    per = 2 * 16 * 4
    cfg = PQNConfig(out=tmp_path / "run", frames=per * 6, eval_every=per * 3, **TINY)
    train_pqn(cfg, progress=False, stop_after_iterations=4)
    first = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert first["frames"] == per * 4 and first["algo"] == "pqn"
    run = train_pqn(cfg, resume=True, progress=False)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["frames"] == per * 6 and ckpt["iteration"] == 6
    assert ckpt["policy"]["layer_norm"] is True
    assert ckpt["wall_time_s"] > first["wall_time_s"]
    assert not torch.equal(ckpt["weights"]["0.weight"], first["weights"]["0.weight"]), "learning changes weights"
    evals = read_evaluations(run)
    assert [int(f) for f in evals[:, 0]] == [per * 3, per * 6]  # every eval_every frames and at the end
    assert all(-21 <= s <= 21 for s in evals[:, 2])
    assert all(f <= per * 6 for f in read_episodes(run)[:, 0])
    bundle = export_bundle(ExportConfig(out=tmp_path / "bundle", source=run, aoti=False, verify_steps=200),
                           say=lambda _: None)
    manifest = load_bundle(bundle)
    assert manifest.provenance["training"]["algo"] == "pqn"
    assert manifest.provenance["training"]["frames_trained"] == per * 6


def test_pqn_refuses_semantics_it_cannot_reproduce_in_one_line(tmp_path):
    cfg = PQNConfig(out=tmp_path / "run", frames=1000, env=EnvSpec(noop_max=30), **TINY)
    with pytest.raises(UnsupportedEnvError, match="noop_max"):
        train_pqn(cfg, progress=False)


def test_ctrl_c_stops_training_at_an_iteration_boundary_with_the_checkpoint_saved(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "host.cli", "train", "--algo", "pqn", "--frames", "10000000",
                             "--envs", "2", "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    scalars = run / "logs" / "train" / "scalars" / "loss.csv"
    deadline = time.monotonic() + 180
    while not (scalars.is_file() and len(scalars.read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--resume" in errors[0], err
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    logged = int(scalars.read_text().splitlines()[-1].split(",")[0])
    assert saved["frames"] == logged and f"{saved['frames']:,}" in errors[0]
