"""PQN, the algorithm: Parallel Q-learning (Gallici et al. 2024); `trainer.py` runs it, collection overlapped.

PQN is DQN without replay buffer or target network: a Nature CNN with
LayerNorm, Q(lambda) targets over short on-policy rollouts, epsilon-greedy
exploration. It needs ~6 M frames for +18 on Pong in CleanRL's runs, half
of PPO's, and exports as argmax-Q like the stacked DQN.

Two processes, one core and one torch thread each, so the trainer degrades
gracefully when anything else runs on the machine:

- the collector steps ale-py's C++ vector env (`vector_games.py`) with a
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

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchrl.objectives.value.functional import td_lambda_return_estimate

from device.atari import AtariGame
from device.manifest import FRAME_SHAPE, STACK_DEPTH, EnvSpec
from host.envs import action_table, make_base_env
from host.frame_stack import StackFrames
from host.train.vector_games import Frames84


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
    eval_max_steps: int = 27_000
    """A greedy evaluation game's cap in decisions (ALE's 108,000 frames over a frame skip of 4)."""
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


def native_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (otherwise autocast would be slower than fp32)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


class FastQ(nn.Module):
    """The Q-network run the fast way for training: bf16 autocast, fp32 Q-values out.

    Not channels-last: with PQN's LayerNorms it is slower, not faster
    (`python bench/learner_layout.py` measures both side by side; the
    figures are in docs/results.md).
    """

    def __init__(self, qnet: nn.Module, bf16: bool) -> None:
        super().__init__()
        self.qnet, self.bf16 = qnet, bf16

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values [B, actions] of stacks [B, STACK_DEPTH, 84, 84]."""
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
        tensors = (torch.zeros(t, n, STACK_DEPTH, *FRAME_SHAPE), torch.zeros(t, n, dtype=torch.int64),
                   torch.zeros(t, n), torch.zeros(t, n, dtype=torch.bool), torch.zeros(t + 1, n))
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
            obs = games.stack
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
        rollout.values[cfg.steps] = net(games.stack).max(1).values
    return finished


def evaluate_greedy(qnet: nn.Module, spec: EnvSpec, games: int, seed: int, max_steps: int = 27_000) -> list[float]:
    """Scores of deterministic games on the device's own loop (AtariGame), fp32, the exported graph's frames."""
    ids, _ = action_table(make_base_env(spec))
    frames84 = Frames84()
    push = StackFrames(STACK_DEPTH)
    scores = []
    for g in range(games):
        game = AtariGame(spec, ids)
        game.seed(seed + g)
        screen = game.reset()
        stack = torch.zeros(1, STACK_DEPTH, *FRAME_SHAPE)
        score, first = 0.0, torch.ones(1, dtype=torch.bool)
        with torch.no_grad():
            for _ in range(max_steps):
                stack, first = push(stack, frames84(screen[None]), first), torch.zeros(1, dtype=torch.bool)
                result = game.step(int(qnet(stack).argmax(1)))
                score += result.reward
                if result.done:
                    break
        scores.append(score)
    return scores


def learn(cfg: PQNConfig, model: FastQ, optim: torch.optim.Optimizer, rollout: Rollout, lr: float
          ) -> dict[str, float]:
    """cfg.epochs passes of minibatch regression of Q(s, a) onto the Q(lambda) targets; returns figures to log."""
    for group in optim.param_groups:
        group["lr"] = lr
    targets = q_lambda_targets(rollout, cfg.gamma, cfg.lmbda).reshape(-1)
    obs = rollout.obs.reshape(-1, STACK_DEPTH, *FRAME_SHAPE)
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
