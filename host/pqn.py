"""`edgerl train --algo pqn`: Parallel Q-learning (Gallici et al. 2024) with collection overlapped with learning.

PQN is DQN without replay buffer or target network: a Nature CNN with
LayerNorm, Q(lambda) targets over short on-policy rollouts, epsilon-greedy
exploration. It needs ~6 M frames for +18 on Pong in CleanRL's runs, half
of PPO's, and exports as argmax-Q like the stacked DQN.

Two processes, one core and one torch thread each, so the trainer degrades
gracefully when anything else runs on the machine:

- the collector steps ale-py's C++ vector env (`host.vector_games`) with a
  copy of the network, writing each rollout into one of two shared-memory
  buffers;
- the learner (this process) trains on the other buffer, then publishes
  its weights. The acting network is therefore at most one update behind.

TorchRL computes the Q(lambda) targets (`td_lambda_return_estimate` with
max-Q as the next-state value) and logs; the loop itself is short enough
to be written out. On a CPU with native bf16 both networks run under bf16
autocast (channels-last is slower with LayerNorm); the exported network is fp32.

Resuming restores weights, optimizer, RNG, frame count, wall time and each
game slot's episode counter; the games themselves restart (ale-py's vector
env cannot save its emulators), so a resumed run is not bit-identical to an
uninterrupted one, only statistically the same.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchrl.objectives.value.functional import td_lambda_return_estimate

from device.manifest import EdgerlError, EnvSpec
from host.checkpoint import CHECKPOINT, save_checkpoint
from host.policies import PolicyConfig, nature_cnn
from host.ppo import native_bf16
from host.training_log import TrainingLog, append_evaluation

STACK = 4


@dataclass(frozen=True)
class PQNConfig:
    """PQN hyper-parameters and the run's budget.

    CleanRL's pqn_atari_envpool settings: 1024 steps per update, 4 epochs x
    4 minibatches, RAdam, orthogonal init.

    A first run with 2 epochs and Adam (eps 1e-5) had not left -21 after 4.6 M frames; CleanRL's settings
    reuse each sample twice as often.
    """

    out: Path = Path("runs/pong")
    frames: int = 16_000_000
    """Emulator frames to train for (agent steps x frame skip); 16 M fit 2.5 h on 2 cores at ~2,270 frames/s."""
    envs: int = 16
    steps: int = 64
    """Agent steps per env per rollout."""
    epochs: int = 4
    minibatches: int = 4
    lr: float = 2.5e-4
    """RAdam's rate, annealed linearly to 0 over `frames`."""
    gamma: float = 0.99
    lmbda: float = 0.65
    epsilon_start: float = 1.0
    epsilon_end: float = 0.01
    epsilon_frames: int = 4_000_000
    """Frames over which epsilon falls linearly from start to end."""
    max_grad_norm: float = 10.0
    seed: int = 1
    checkpoint_minutes: float = 10.0
    eval_every: int = 2_000_000
    """Frames between greedy evaluations on the device loop."""
    eval_games: int = 1
    bf16: bool | None = None
    """bf16 autocast (None: where the CPU has native bf16)."""
    env: EnvSpec = field(default_factory=EnvSpec)

    def epsilon(self, frames: int) -> float:
        """Exploration rate after `frames` frames."""
        done = min(1.0, frames / self.epsilon_frames)
        return self.epsilon_start + done * (self.epsilon_end - self.epsilon_start)

    @property
    def frames_per_rollout(self) -> int:
        """Emulator frames one rollout plays."""
        return self.envs * self.steps * self.env.frame_skip


class FastQ(nn.Module):
    """The Q-network run the fast way for training: bf16 autocast, fp32 Q-values out.

    Not channels-last: with PQN's LayerNorms it is slower, not faster. Measured
    side by side, one thread, a learner step at minibatch 256: bf16 NCHW
    423 us/sample, bf16 channels-last 614, torch.compile'd 579 / 507
    (`python bench/learner_layout.py`).
    """

    def __init__(self, qnet: nn.Module, bf16: bool) -> None:
        super().__init__()
        self.qnet, self.bf16 = qnet, bf16

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values [B, actions] of observation stacks [B, 4, 84, 84]."""
        if not self.bf16:
            return self.qnet(obs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.qnet(obs).float()


@dataclass
class Rollout:
    """One rollout in shared memory: [steps, envs] of everything Q(lambda) needs."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    values: torch.Tensor
    """max-Q of each observation by the acting network; row `steps` is the bootstrap observation's."""

    @classmethod
    def shared(cls, cfg: PQNConfig) -> Rollout:
        """Zeroed buffers in shared memory, visible to the collector process without copies."""
        t, n = cfg.steps, cfg.envs
        tensors = (torch.zeros(t, n, STACK, 84, 84), torch.zeros(t, n, dtype=torch.int64), torch.zeros(t, n),
                   torch.zeros(t, n, dtype=torch.bool), torch.zeros(t + 1, n))
        return cls(*(x.share_memory_() for x in tensors))


def q_lambda_targets(rollout: Rollout, gamma: float, lmbda: float) -> torch.Tensor:
    """Q(lambda) returns [steps, envs]: TD(lambda) with max-Q of the next observation as its value.

    A finished game's next observation is the next game's first, so `dones`
    cuts both the bootstrap and the lambda recursion there.
    """
    def tn(x: torch.Tensor) -> torch.Tensor:  # TorchRL wants time along dim -2: [envs, steps, 1]
        return x.transpose(0, 1).unsqueeze(-1)

    g = td_lambda_return_estimate(gamma, lmbda, tn(rollout.values[1:]), tn(rollout.rewards), tn(rollout.dones),
                                  tn(rollout.dones))
    return g.squeeze(-1).transpose(0, 1)


def collect(cfg: PQNConfig, games: Any, net: nn.Module, rollout: Rollout, frames: int,
            gen: torch.Generator) -> list[tuple[float, int]]:
    """Play cfg.steps epsilon-greedy steps in every game into `rollout`; returns the finished games."""
    finished: list[tuple[float, int]] = []
    per_step = cfg.envs * cfg.env.frame_skip
    with torch.no_grad():
        for t in range(cfg.steps):
            obs = games.frames
            q = net(obs)
            eps = cfg.epsilon(frames + t * per_step)
            explore = torch.rand(cfg.envs, generator=gen) < eps
            random = torch.randint(q.shape[1], (cfg.envs,), generator=gen)
            action = torch.where(explore, random, q.argmax(1))
            rollout.obs[t] = obs
            rollout.values[t] = q.max(1).values
            rollout.actions[t] = action
            rewards, dones, fin = games.step(action.numpy())
            rollout.rewards[t] = torch.from_numpy(rewards)
            rollout.dones[t] = torch.from_numpy(dones)
            finished += fin
        rollout.values[cfg.steps] = net(games.frames).max(1).values
    return finished


def _collector(cfg: PQNConfig, n_actions: int, weights: dict[str, torch.Tensor], rollouts: list[Rollout],
               episodes: np.ndarray, conn: Any) -> None:
    """The collector process: waits for (slot, frames), collects into that slot, reports back."""
    from host.vector_games import VectorGames

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the learner, which stops us cleanly
    try:
        games = VectorGames(cfg.env, cfg.envs, cfg.seed, episodes)
        net = FastQ(nature_cnn(n_actions, STACK, layer_norm=True), bool(cfg.bf16))
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + int(episodes.sum()))
        conn.send(("ready", None))
        while (msg := conn.recv()) is not None:
            slot, frames = msg
            started = time.perf_counter()
            net.qnet.load_state_dict(weights)
            finished = collect(cfg, games, net, rollouts[slot], frames, gen)
            conn.send(("done", (finished, games.episodes.copy(), time.perf_counter() - started)))
    except KeyboardInterrupt:
        pass
    except BaseException as err:  # report, so the learner can stop with one line instead of hanging
        conn.send(("error", f"{type(err).__name__}: {err}"))


def evaluate_greedy(qnet: nn.Module, spec: EnvSpec, games: int, seed: int, max_steps: int = 27_000) -> list[float]:
    """Scores of deterministic games on the device's own loop (AtariGame), fp32, the exported graph's frames."""
    from device.atari import AtariGame
    from host.envs import action_table, make_base_env
    from host.vector_games import GraphFrames

    ids, _ = action_table(make_base_env(spec))
    frames_of = GraphFrames()
    scores = []
    for g in range(games):
        game = AtariGame(spec, ids)
        game.seed(seed + g)
        screen = game.reset()
        stack = torch.zeros(1, STACK, 84, 84)
        score = 0.0
        with torch.no_grad():
            for _ in range(max_steps):
                stack = torch.cat([stack[:, 1:], frames_of(screen[None])], dim=1)
                result = game.step(int(qnet(stack).argmax(1)))
                score += result.reward
                if result.done:
                    break
        scores.append(score)
    return scores


def _config_json(cfg: PQNConfig) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}


class CollectorError(EdgerlError):
    """The collector process failed."""


class TrainingStopped(EdgerlError):
    """The user stopped training (Ctrl-C, SIGTERM); the checkpoint is saved."""

    exit_code = 130


def train_pqn(cfg: PQNConfig, resume: bool = False, progress: bool = True,
              stop_after_iterations: int | None = None) -> Path:
    """Train until cfg.frames; checkpoint atomically every few minutes; return the run folder."""
    import torch.multiprocessing as mp

    from host.envs import action_table, make_base_env
    from host.vector_games import check_spec

    check_spec(cfg.env)
    torch.set_num_threads(1)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = replace(cfg, bf16=native_bf16() if cfg.bf16 is None else cfg.bf16)
    torch.manual_seed(cfg.seed)
    n_actions = len(action_table(make_base_env(cfg.env))[0])
    qnet = nature_cnn(n_actions, STACK, layer_norm=True)
    model = FastQ(qnet, cfg.bf16)
    optim = torch.optim.RAdam(qnet.parameters(), lr=cfg.lr)
    frames, iteration, wall, next_eval = 0, 0, 0.0, cfg.eval_every
    episodes = np.zeros(cfg.envs, dtype=np.int64)
    ckpt_path = out / CHECKPOINT
    if resume:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        qnet.load_state_dict(state["weights"])
        optim.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        frames, iteration, wall = state["frames"], state["iteration"], state["wall_time_s"]
        episodes = np.asarray(state["episodes"], dtype=np.int64)
        next_eval = state["next_eval"]
    (out / "config.json").write_text(json.dumps({"algo": "pqn", **_config_json(cfg)}, indent=2))
    log = TrainingLog(out, total_frames=cfg.frames, start_frames=frames, progress=progress, start_wall=wall)
    iterations = cfg.frames // cfg.frames_per_rollout
    session_start = time.monotonic()
    last_ckpt = time.monotonic()

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, PolicyConfig(kind="stacked", layer_norm=True), cfg.env, qnet.state_dict(),
                        algo="pqn", frames=frames, iteration=iteration,
                        wall_time_s=wall + time.monotonic() - session_start, optimizer=optim.state_dict(),
                        torch_rng=torch.get_rng_state(), episodes=episodes.tolist(), next_eval=next_eval,
                        hyperparameters=_config_json(cfg))

    weights = {k: v.detach().clone().share_memory_() for k, v in qnet.state_dict().items()}
    rollouts = [Rollout.shared(cfg), Rollout.shared(cfg)]
    ctx = mp.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    collector = ctx.Process(target=_collector, args=(cfg, n_actions, weights, rollouts, episodes, child_conn),
                            daemon=True)
    collector.start()

    # Ctrl-C or SIGTERM: finish nothing half-way, save at the iteration boundary, exit.
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}

    def receive() -> Any:
        while not conn.poll(0.2):
            if stop.is_set():
                return None
            if not collector.is_alive():
                raise CollectorError(f"the collector process died (exit code {collector.exitcode})")
        kind, payload = conn.recv()
        if kind == "error":
            raise CollectorError(f"the collector failed: {payload}")
        return payload

    try:
        receive()  # ready
        slot = 0
        conn.send((slot, frames))
        done_iters = 0
        last_end = time.perf_counter()
        while iteration < iterations:
            t0 = time.perf_counter()
            received = receive()
            if received is None:  # stopped while the collector played: its half rollout is dropped
                break
            finished, episodes, collect_s = received
            wait_s = time.perf_counter() - t0
            rollout = rollouts[slot]
            with torch.no_grad():
                for name, value in qnet.state_dict().items():
                    weights[name].copy_(value)
            frames_collected = frames + cfg.frames_per_rollout
            if iteration + 1 < iterations:  # the next rollout plays while this one is learned
                conn.send((1 - slot, frames_collected))
            t1 = time.perf_counter()
            stats = learn(cfg, model, optim, rollout, lr=cfg.lr * (1.0 - iteration / iterations))
            learn_s = time.perf_counter() - t1
            iteration += 1
            frames = frames_collected
            slot = 1 - slot
            # iteration_s: wall time per rollout, collection and learning overlapped (what frames/s is made of).
            now = time.perf_counter()
            scalars = {"collect_s": collect_s, "learn_s": learn_s, "wait_s": wait_s, "iteration_s": now - last_end,
                       "epsilon": cfg.epsilon(frames), **stats}
            last_end = now
            if frames >= next_eval or iteration == iterations:
                qnet.eval()
                scores = evaluate_greedy(qnet, cfg.env, cfg.eval_games, seed=10_000 + iteration)
                qnet.train()
                scalars["eval_return"] = float(np.mean(scores))
                append_evaluation(out, frames, wall + time.monotonic() - session_start, scores)
                next_eval += cfg.eval_every
            log.step(frames, finished, **scalars)
            done_iters += 1
            enough = bool(stop_after_iterations and done_iters >= stop_after_iterations)
            if time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60 or iteration == iterations or enough:
                checkpoint()
                last_ckpt = time.monotonic()
            if enough or stop.is_set():
                break
        if stop.is_set():  # the one save for a user's stop, whether it came during learning or collection
            checkpoint()
            raise TrainingStopped(f"stopped at {frames:,} frames; the checkpoint in {out} is saved, "
                                  "`edgerl train --resume` continues it")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if collector.is_alive():
            try:
                conn.send(None)
            except OSError:
                pass
            collector.join(timeout=10)
            if collector.is_alive():
                collector.terminate()
        log.close()
    return out


def learn(cfg: PQNConfig, model: FastQ, optim: torch.optim.Optimizer, rollout: Rollout, lr: float
          ) -> dict[str, float]:
    """cfg.epochs passes of minibatch regression of Q(s, a) onto the Q(lambda) targets; returns figures to log."""
    for group in optim.param_groups:
        group["lr"] = lr
    targets = q_lambda_targets(rollout, cfg.gamma, cfg.lmbda).reshape(-1)
    obs = rollout.obs.reshape(-1, STACK, 84, 84)
    actions = rollout.actions.reshape(-1)
    size = len(targets) // cfg.minibatches
    losses, q_taken = [], []
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(targets))
        for k in range(cfg.minibatches):
            idx = perm[k * size:(k + 1) * size]
            q = model(obs[idx]).gather(1, actions[idx, None]).squeeze(1)
            loss = nn.functional.mse_loss(q, targets[idx])
            optim.zero_grad()
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optim.step()
            losses.append(float(loss.detach()))
            q_taken.append(q.detach())
    q_all = torch.cat(q_taken[-cfg.minibatches:])
    t_all = targets[perm[:len(q_all)]]
    var = float(t_all.var())
    explained = 1.0 - float((t_all - q_all).var()) / var if var > 0 else math.nan
    return {"loss": float(np.mean(losses)), "q_mean": float(q_all.mean()), "explained_variance": explained,
            "grad_norm": float(grad_norm), "lr": lr}
