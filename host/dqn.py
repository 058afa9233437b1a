"""`edgerl train --algo dqn`: the tutorial's DQN made sound, resumable.

Frame stacking (the `stacked` policy), the v5 env semantics (the device's
loop via GameBatch), a replay buffer, a hard-updated target network and an
annealed e-greedy schedule, all wired from TorchRL: QValueActor,
EGreedyModule, DQNLoss, HardUpdate, ReplayBuffer.

The replay buffer stores stacks as float16 to fit a CPU machine's memory
(2 x 56 KB per transition); training sees them within 5e-4 of the float32
stacks the graph computes, and the network itself is float32 throughout.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tensordict import TensorDict
from torch import nn
from torchrl.data import Categorical, LazyTensorStorage, ReplayBuffer
from torchrl.modules import EGreedyModule, QValueActor
from torchrl.objectives import DQNLoss, HardUpdate

from device.manifest import EnvSpec
from host.checkpoint import CHECKPOINT, save_checkpoint
from host.policies import PolicyConfig, nature_cnn
from host.training_log import TrainingLog
from host.vecenv import GameBatch

REPLAY = "replay.pt"


@dataclass(frozen=True)
class DQNConfig:
    """DQN hyper-parameters and the run's budget."""

    out: Path = Path("runs/pong-dqn")
    frames: int = 4_000_000
    envs: int = 4
    buffer: int = 20_000
    """Transitions kept (float16 stacks: about 2.3 GB at 20k)."""
    batch: int = 32
    lr: float = 1e-4
    gamma: float = 0.99
    learning_starts: int = 10_000
    """Agent steps before the first update."""
    train_every: int = 4
    """Agent steps (over all envs) per gradient update."""
    target_every: int = 1_000
    """Gradient updates between target-network copies."""
    eps_start: float = 1.0
    eps_end: float = 0.02
    eps_steps: int = 250_000
    """Agent steps over which epsilon anneals."""
    seed: int = 1
    threads: int = 2
    checkpoint_minutes: float = 5.0
    boundary_steps: int = 1024
    """Agent steps between the points where checkpoints may happen (and sticky actions are pinned)."""
    env: EnvSpec = field(default_factory=EnvSpec)


def build(cfg: DQNConfig, n_actions: int) -> tuple[nn.Module, QValueActor, EGreedyModule, DQNLoss, HardUpdate]:
    """Network, greedy actor, exploration, loss and target updater."""
    qnet = nature_cnn(n_actions, in_channels=4)
    spec = Categorical(n_actions, shape=(), dtype=torch.int64)
    actor = QValueActor(qnet, in_keys=["observation"], spec=spec)
    explore = EGreedyModule(spec, eps_init=cfg.eps_start, eps_end=cfg.eps_end,
                            annealing_num_steps=max(1, cfg.eps_steps // cfg.envs))
    loss = DQNLoss(actor, loss_function="smooth_l1", delay_value=True, action_space=spec)
    loss.make_value_estimator(gamma=cfg.gamma)
    # HardUpdate copies when its counter, which runs 0..interval, reaches the interval: every interval+1 steps.
    updater = HardUpdate(loss, value_network_update_interval=max(cfg.target_every - 1, 0))
    return qnet, actor, explore, loss, updater


def train_dqn(cfg: DQNConfig, resume: bool = False, progress: bool = True,
              stop_after_steps: int | None = None) -> Path:
    """Train until cfg.frames; checkpoint (weights, target, optimizer, buffer, games, RNG) atomically."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    games = GameBatch(cfg.env, cfg.envs, cfg.seed)
    qnet, actor, explore, loss, updater = build(cfg, games.n_actions)
    optim = torch.optim.Adam(loss.parameters(), lr=cfg.lr)
    buffer = ReplayBuffer(storage=LazyTensorStorage(cfg.buffer), batch_size=cfg.batch)
    frames, steps, updates, wall = 0, 0, 0, 0.0
    if resume:
        state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)
        qnet.load_state_dict(state["weights"])
        loss.target_value_network_params.update_(TensorDict(state["target"]).unflatten_keys("."))
        optim.load_state_dict(state["optimizer"])
        explore.eps.copy_(state["eps"])
        games.load_state_dict(state["games"])
        frames, steps, updates = state["frames"], state["steps"], state["updates"]
        wall = float(state.get("wall_time_s", 0.0))
        updater.counter = int(state["target_counter"])  # when the next target copy is due
        buffer.load_state_dict(torch.load(out / REPLAY, map_location="cpu", weights_only=False))
        torch.set_rng_state(state["torch_rng"])  # last: restoring the buffer draws from the global RNG
    (out / "config.json").write_text(json.dumps({"algo": "dqn", **{k: str(v) for k, v in asdict(cfg).items()}},
                                                indent=2))
    log = TrainingLog(out, total_frames=cfg.frames, start_frames=frames, progress=progress, start_wall=wall)
    last_ckpt = time.monotonic()
    started = time.monotonic()

    def checkpoint() -> None:
        replay_tmp = out / f".{REPLAY}.tmp"
        torch.save(buffer.state_dict(), replay_tmp)
        replay_tmp.replace(out / REPLAY)
        target = loss.target_value_network_params.flatten_keys(".").to_dict()
        save_checkpoint(out / CHECKPOINT, PolicyConfig(kind="stacked"), cfg.env, qnet.state_dict(), algo="dqn",
                        frames=frames, steps=steps, updates=updates, target=target, target_counter=updater.counter,
                        optimizer=optim.state_dict(),
                        eps=explore.eps.clone(), games=games.state_dict(), torch_rng=torch.get_rng_state(),
                        wall_time_s=wall + time.monotonic() - started, hyperparameters={k: str(v) for k, v in
                                                                                  asdict(cfg).items()})

    done_steps = 0
    while frames < cfg.frames:
        at_boundary = steps % cfg.boundary_steps < cfg.envs
        if at_boundary:
            games.pin_sticky_action()
            due = time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60
            if done_steps and (due or (stop_after_steps and done_steps >= stop_after_steps)):
                checkpoint()
                last_ckpt = time.monotonic()
                if stop_after_steps and done_steps >= stop_after_steps:
                    break
        obs = games.frames
        with torch.no_grad():
            td = explore(actor(TensorDict({"observation": obs}, batch_size=[cfg.envs])))
        action = td["action"]
        next_obs, reward, done, term, finished = games.step(action.numpy())
        explore.step()
        buffer.extend(TensorDict({
            "observation": obs.half(),
            "action": action,
            "next": {"observation": next_obs.half(), "reward": torch.from_numpy(reward).unsqueeze(-1),
                     "done": torch.from_numpy(done).unsqueeze(-1), "terminated": torch.from_numpy(term).unsqueeze(-1)},
        }, batch_size=[cfg.envs]))
        steps += cfg.envs
        frames += cfg.envs * cfg.env.frame_skip
        loss_value = float("nan")
        if steps >= cfg.learning_starts and steps % cfg.train_every < cfg.envs:
            sample = buffer.sample()
            sample["observation"] = sample["observation"].float()
            sample["next", "observation"] = sample["next", "observation"].float()
            value = loss(sample)["loss"]
            optim.zero_grad()
            value.backward()
            nn.utils.clip_grad_norm_(loss.parameters(), 10.0)
            optim.step()
            updater.step()
            updates += 1
            loss_value = float(value.detach())
        if finished or steps % 1024 < cfg.envs:
            log.step(frames, finished, epsilon=float(explore.eps), loss=loss_value)
        done_steps += cfg.envs
    else:
        checkpoint()  # the run is complete: its end is a boundary too
    log.close()
    return out
