"""A user trains a Pong policy in short, resumable runs and ships it."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from device.manifest import EnvSpec, load_bundle
from host.dqn import DQNConfig, build, train_dqn
from host.evaluate import evaluate_run
from host.export import ExportConfig, export_bundle
from host.ppo import ActorCritic, PPOConfig, advantages, make_loss, train_ppo
from host.training_log import plot_run, read_episodes
from host.vecenv import GameBatch

TINY_PPO = dict(envs=2, steps=32, epochs=1, minibatches=2, threads=1)


def tiny_ppo(out, iterations):
    return PPOConfig(out=out, frames=2 * 32 * 4 * iterations, **TINY_PPO)


def test_ppo_short_run_checkpoints_exports_and_plays(tmp_path):
    run = train_ppo(tiny_ppo(tmp_path / "run", 2), progress=False)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["frames"] == 2 * 32 * 4 * 2 and ckpt["algo"] == "ppo"
    assert (run / "config.json").is_file() and (run / "logs").is_dir()
    bundle = export_bundle(ExportConfig(out=tmp_path / "bundle", source=run, aoti=False), say=lambda _: None)
    manifest = load_bundle(bundle)
    assert manifest.policy_kind == "stacked" and manifest.provenance["training"]["frames_trained"] == 512
    scores = evaluate_run(run, episodes=1, max_steps=60)
    assert len(scores) == 1 and -21 <= scores[0] <= 21


def _weights(run):
    return torch.load(run / "checkpoint.pt", weights_only=True)["weights"]


def test_ppo_resume_continues_bit_identically(tmp_path):
    straight = train_ppo(tiny_ppo(tmp_path / "a", 3), progress=False)
    split = tiny_ppo(tmp_path / "b", 3)
    train_ppo(split, progress=False, stop_after_iterations=1)
    train_ppo(split, resume=True, progress=False)
    a, b = _weights(straight), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_dqn_short_run_and_resume_bit_identically(tmp_path):
    def cfg(out):
        return DQNConfig(out=out, frames=4 * 4 * 240, buffer=1000, learning_starts=200, target_every=5, threads=1,
                         boundary_steps=200)

    train_dqn(cfg(tmp_path / "a"), progress=False)
    train_dqn(cfg(tmp_path / "b"), progress=False, stop_after_steps=400)
    train_dqn(cfg(tmp_path / "b"), resume=True, progress=False)
    ca = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    cb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert ca["updates"] == cb["updates"] > 0 and ca["algo"] == "dqn"
    for key in ca["weights"]:
        assert torch.equal(ca["weights"][key], cb["weights"][key]), key


def test_dqn_target_network_is_copied_every_n_updates():
    qnet, actor, explore, loss, updater = build(DQNConfig(target_every=3), 6)
    online = loss.value_network_params.flatten_keys(".")
    target = loss.target_value_network_params.flatten_keys(".")
    key = next(k for k in online.keys() if k.endswith("weight"))
    with torch.no_grad():
        online[key].add_(1.0)
    updater.step()
    updater.step()
    assert not torch.equal(online[key], target[key])  # two updates: not copied yet
    updater.step()
    assert torch.equal(online[key], target[key])  # third update: hard copy


def test_gae_matches_a_hand_computation():
    gamma, lmbda = 0.9, 0.8
    values = torch.tensor([[0.5], [0.2], [0.1], [0.4]])  # [steps, envs=1]
    rewards = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    dones = torch.tensor([[False], [True], [False], [False]])
    terms = dones.clone()
    next_value = torch.tensor([0.3])
    adv, target = advantages(values, next_value, rewards, dones, terms, gamma, lmbda)
    v = values[:, 0].tolist() + [0.3]
    r, d = rewards[:, 0].tolist(), dones[:, 0].tolist()
    expected, running = [0.0] * 4, 0.0
    for t in reversed(range(4)):
        nonterminal = 0.0 if d[t] else 1.0
        delta = r[t] + gamma * v[t + 1] * nonterminal - v[t]
        running = delta + gamma * lmbda * nonterminal * running
        expected[t] = running
    np.testing.assert_allclose(adv[0, :, 0].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(target[0, :, 0].numpy(), np.array(expected) + v[:4], rtol=1e-6)


def test_shared_trunk_loss_equals_torchrl_actor_value_operator():
    from tensordict import TensorDict
    from tensordict.nn import TensorDictModule as Mod
    from torchrl.modules import ActorValueOperator, ProbabilisticActor, ValueOperator
    from torchrl.objectives import ClipPPOLoss

    torch.manual_seed(0)
    model, cfg = ActorCritic(6), PPOConfig()
    common = Mod(model.trunk, in_keys=["observation"], out_keys=["hidden"])
    actor = ProbabilisticActor(Mod(model.policy_head, in_keys=["hidden"], out_keys=["logits"]), in_keys=["logits"],
                               distribution_class=torch.distributions.Categorical, return_log_prob=True)
    avo = ActorValueOperator(common, actor, ValueOperator(model.value_head, in_keys=["hidden"]))
    reference = ClipPPOLoss(avo.get_policy_operator(), avo.get_value_operator(), clip_epsilon=cfg.clip,
                            entropy_coeff=cfg.entropy, critic_coeff=cfg.value_coef, loss_critic_type="l2",
                            normalize_advantage=True)
    ours = make_loss(model, cfg)
    td = TensorDict({"observation": torch.rand(16, 4, 84, 84), "action": torch.randint(0, 6, (16,)),
                     "action_log_prob": -torch.rand(16), "advantage": torch.randn(16, 1),
                     "value_target": torch.randn(16, 1)}, [16])
    grads = []
    for loss in (reference, ours):
        model.zero_grad()
        out = loss(td.clone())
        (out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        grads.append({k: float(v) for k, v in out.items() if k.startswith("loss")})
    assert grads[1] == pytest.approx(grads[3], rel=1e-5)
    for g_ref, g_ours in zip(grads[0], grads[2], strict=True):
        torch.testing.assert_close(g_ref, g_ours, rtol=1e-4, atol=1e-6)


def test_training_observations_equal_the_exported_graphs_preprocessing(bundles):
    # The stacked graph returns its frame stack as a next state: it must be what training fed the network.
    from device import Policy

    policy = Policy.load(bundles["stacked"])
    (stack,) = [p.output for p in policy.manifest.state]
    games = GameBatch(EnvSpec(), 1, seed=3)
    screen = games.pixels[0].copy()
    rng = np.random.default_rng(0)
    for step in range(300):
        frames = policy.step(screen)[stack]
        assert np.array_equal(frames, games.frames[0].numpy()), f"step {step}"
        _, _, done, _, _ = games.step(rng.integers(0, 6, size=1))
        screen = games.pixels[0].copy()
        if done[0]:
            policy.reset()


def test_plot_writes_the_learning_curve(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "episodes.csv").write_text("frames,wall_s,return,length\n" +
                                      "".join(f"{i * 1000},{i * 2.0},{-21 + i},{800}\n" for i in range(30)))
    png = plot_run(run)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(read_episodes(run)) == 30


def test_train_cli_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path):
    def edgerl(*args):
        return subprocess.run([sys.executable, "-m", "host.cli", *map(str, args)], capture_output=True, text=True,
                              timeout=300)

    run = edgerl("train", "--frames", 100, "--out", tmp_path / "none", "--resume")
    assert run.returncode == 2 and "nothing to resume" in run.stderr
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"x")
    run = edgerl("train", "--frames", 100, "--out", tmp_path / "run")
    assert run.returncode == 2 and "--resume" in run.stderr


def test_bf16_trunk_trains_in_bf16_but_keeps_fp32_weights_for_export():
    torch.manual_seed(0)
    fp32, bf16 = ActorCritic(6, bf16=False), ActorCritic(6, bf16=True)
    bf16.load_state_dict(fp32.state_dict())
    obs = torch.rand(32, 4, 84, 84)
    (logits32, value32), (logits16, value16) = fp32(obs), bf16(obs)
    # Heads see fp32 features, so the PPO ratios are computed in fp32...
    assert logits16.dtype == value16.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in bf16.parameters())
    # ...from features rounded through bf16: close to fp32, not equal.
    assert not torch.equal(logits16, logits32)
    torch.testing.assert_close(logits16, logits32, rtol=0.05, atol=0.02)
    torch.testing.assert_close(value16, value32, rtol=0.05, atol=0.02)
    loss = logits16.square().mean() + value16.square().mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in bf16.parameters())


def _logged(run, name):
    import csv

    with open(run / "logs" / "train" / "scalars" / f"{name}.csv") as fh:
        return [(int(r[0]), float(r[1])) for r in csv.reader(fh) if r]


def test_a_run_killed_after_its_checkpoint_logs_each_iteration_once_when_resumed(tmp_path):
    straight = train_ppo(tiny_ppo(tmp_path / "a", 3), progress=False)
    run = tmp_path / "b"
    train_ppo(tiny_ppo(run, 3), progress=False, stop_after_iterations=1)
    last_checkpoint = (run / "checkpoint.pt").read_bytes()
    train_ppo(tiny_ppo(run, 3), resume=True, progress=False)  # logs iterations 2 and 3, then is "killed"
    (run / "checkpoint.pt").write_bytes(last_checkpoint)  # before it could checkpoint them
    train_ppo(tiny_ppo(run, 3), resume=True, progress=False)
    assert [f for f, _ in _logged(run, "loss")] == [256, 512, 768]
    assert _logged(run, "loss") == _logged(straight, "loss")
