"""`edgerl train`: a PQN run, resumable, with the collector in its own process and learning overlapped with it.

The collector process plays the next rollout into one shared-memory buffer
while this process learns on the other, then the weights are published
(`pqn.py` has the algorithm). The run checkpoints atomically every few
minutes and on Ctrl-C/SIGTERM at the iteration boundary; `--resume` reads
the checkpoint back with `host.checkpoint.load_checkpoint` (weights only,
no unpickling) and continues its schedule, counters and RNG.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp

from device.manifest import EXIT_INTERRUPTED, STACK_DEPTH, EdgerlError
from host.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from host.envs import action_table, make_base_env
from host.policies import PolicyConfig, nature_cnn
from host.train.pqn import FastQ, PQNConfig, Rollout, collect, evaluate_greedy, learn, native_bf16
from host.train.training_log import TrainingLog, append_evaluation
from host.train.vector_games import VectorGames, check_spec


class CollectorError(EdgerlError):
    """The collector process failed."""


class TrainingStopped(EdgerlError):
    """The user stopped training (Ctrl-C, SIGTERM); the checkpoint is saved."""

    exit_code = EXIT_INTERRUPTED


def _config_json(cfg: PQNConfig) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}


def _collector(cfg: PQNConfig, n_actions: int, weights: dict[str, torch.Tensor], rollouts: list[Rollout],
               episodes: np.ndarray, conn: Any) -> None:
    """The collector process: waits for (slot, frames), collects into that slot, reports back."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the learner, which stops us cleanly
    try:
        games = VectorGames(cfg.env, cfg.envs, cfg.seed, episodes)
        net = FastQ(nature_cnn(n_actions, STACK_DEPTH, layer_norm=True), bool(cfg.bf16))
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


class Collector:
    """The collector process and its pipe: ask for a rollout into a slot, wait for it, stop it."""

    def __init__(self, cfg: PQNConfig, n_actions: int, weights: dict[str, torch.Tensor], rollouts: list[Rollout],
                 episodes: np.ndarray, stop: threading.Event) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.stop = stop
        self.proc = ctx.Process(target=_collector, args=(cfg, n_actions, weights, rollouts, episodes, child),
                                daemon=True)
        self.proc.start()

    def request(self, slot: int, frames: int) -> None:
        """Start collecting into `slot`, with exploration as at `frames`."""
        self.conn.send((slot, frames))

    def receive(self) -> Any:
        """The collector's next answer, or None when the user stopped meanwhile."""
        while not self.conn.poll(0.2):
            if self.stop.is_set():
                return None
            if not self.proc.is_alive():
                raise CollectorError(f"the collector process died (exit code {self.proc.exitcode})")
        kind, payload = self.conn.recv()
        if kind == "error":
            raise CollectorError(f"the collector failed: {payload}")
        return payload

    def close(self) -> None:
        """Ask it to stop; kill it if it does not."""
        if self.proc.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(timeout=10)
            if self.proc.is_alive():
                self.proc.terminate()


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C or SIGTERM set `stop` (finish nothing half-way) instead of raising, for as long as training runs."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class Progress:
    """Where a run stands: what a checkpoint saves beside the weights, optimizer and RNG."""

    frames: int = 0
    iteration: int = 0
    wall_time_s: float = 0.0
    next_eval: int = 0
    episodes: list[int] = field(default_factory=list)
    """Finished games per game slot: each slot's next game is seeded by its count."""


class Run:
    """One training run: the network, its optimizer, its progress, its folder."""

    def __init__(self, cfg: PQNConfig, resume: bool) -> None:
        self.cfg, self.out = cfg, Path(cfg.out)
        self.n_actions = len(action_table(make_base_env(cfg.env))[0])
        torch.manual_seed(cfg.seed)
        self.qnet = nature_cnn(self.n_actions, STACK_DEPTH, layer_norm=True)
        self.model = FastQ(self.qnet, bool(cfg.bf16))
        self.optim = torch.optim.RAdam(self.qnet.parameters(), lr=cfg.lr)
        self.progress = Progress(next_eval=cfg.eval_every, episodes=[0] * cfg.envs)
        if resume:
            self._restore()
        self.started = time.monotonic()

    def _restore(self) -> None:
        state = load_checkpoint(self.out / CHECKPOINT)
        self.qnet.load_state_dict(state["weights"])
        self.optim.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.progress = Progress(state["frames"], state["iteration"], state["wall_time_s"], state["next_eval"],
                                 [int(e) for e in state["episodes"]])

    def wall(self) -> float:
        """Training wall time over every session of the run."""
        return self.progress.wall_time_s + time.monotonic() - self.started

    def checkpoint(self) -> None:
        """Save weights, optimizer, RNG and progress atomically."""
        p = self.progress
        save_checkpoint(self.out / CHECKPOINT, PolicyConfig(network="stacked", layer_norm=True), self.cfg.env,
                        self.qnet.state_dict(), algo="pqn", frames=p.frames, iteration=p.iteration,
                        wall_time_s=self.wall(), optimizer=self.optim.state_dict(), torch_rng=torch.get_rng_state(),
                        episodes=list(p.episodes), next_eval=p.next_eval,
                        hyperparameters=_config_json(self.cfg))

    def evaluate_if_due(self, scalars: dict[str, float], last: bool) -> None:
        """A greedy game on the device loop every `eval_every` frames and at the end."""
        p = self.progress
        if p.frames < p.next_eval and not last:
            return
        self.qnet.eval()
        scores = evaluate_greedy(self.qnet, self.cfg.env, self.cfg.eval_games, seed=10_000 + p.iteration,
                                 max_steps=self.cfg.eval_max_steps)
        self.qnet.train()
        scalars["eval_return"] = float(np.mean(scores))
        append_evaluation(self.out, p.frames, self.wall(), scores)
        p.next_eval += self.cfg.eval_every


def train_pqn(cfg: PQNConfig, resume: bool = False, progress: bool = True,
              stop_after_iterations: int | None = None) -> Path:
    """Train until cfg.frames; checkpoint atomically every few minutes; return the run folder."""
    check_spec(cfg.env)
    torch.set_num_threads(1)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    cfg = replace(cfg, bf16=native_bf16() if cfg.bf16 is None else cfg.bf16)
    run = Run(cfg, resume)
    (run.out / "config.json").write_text(json.dumps({"algo": "pqn", **_config_json(cfg)}, indent=2))
    log = TrainingLog(run.out, total_frames=cfg.frames, start_frames=run.progress.frames, progress=progress,
                      start_wall=run.progress.wall_time_s)
    weights = {k: v.detach().clone().share_memory_() for k, v in run.qnet.state_dict().items()}
    rollouts = [Rollout.shared(cfg), Rollout.shared(cfg)]
    stop = threading.Event()
    collector = Collector(cfg, run.n_actions, weights, rollouts, np.asarray(run.progress.episodes, np.int64), stop)
    try:
        with stop_on_signals(stop):
            _iterate(run, collector, weights, rollouts, log, stop, stop_after_iterations)
        if stop.is_set():  # the one save for a user's stop, whether it came during learning or collection
            run.checkpoint()
            raise TrainingStopped(f"stopped at {run.progress.frames:,} frames; the checkpoint in {run.out} is saved, "
                                  "`edgerl train --resume` continues it")
    finally:
        collector.close()
        log.close()
    return run.out


def _iterate(run: Run, collector: Collector, weights: dict[str, torch.Tensor], rollouts: list[Rollout],
             log: TrainingLog, stop: threading.Event, stop_after: int | None) -> None:
    """Learn on one buffer while the collector fills the other, until the budget, a stop, or `stop_after`."""
    cfg, p = run.cfg, run.progress
    iterations = cfg.frames // cfg.frames_per_rollout
    collector.receive()  # ready
    slot, done_iters, last_ckpt, last_end = 0, 0, time.monotonic(), time.perf_counter()
    collector.request(slot, p.frames)
    while p.iteration < iterations:
        t0 = time.perf_counter()
        received = collector.receive()
        if received is None:  # stopped while the collector played: its half rollout is dropped
            return
        finished, episodes, collect_s = received
        wait_s = time.perf_counter() - t0
        with torch.no_grad():
            for name, value in run.qnet.state_dict().items():
                weights[name].copy_(value)
        if p.iteration + 1 < iterations:  # the next rollout plays while this one is learned
            collector.request(1 - slot, p.frames + cfg.frames_per_rollout)
        t1 = time.perf_counter()
        stats = learn(cfg, run.model, run.optim, rollouts[slot], lr=cfg.lr * (1.0 - p.iteration / iterations))
        learn_s = time.perf_counter() - t1
        p.iteration += 1
        p.frames += cfg.frames_per_rollout
        p.episodes = [int(e) for e in episodes]
        slot = 1 - slot
        # iteration_s: wall time per rollout, collection and learning overlapped (what frames/s is made of).
        now = time.perf_counter()
        scalars = {"collect_s": collect_s, "learn_s": learn_s, "wait_s": wait_s, "iteration_s": now - last_end,
                   "epsilon": cfg.epsilon(p.frames), **stats}
        last_end = now
        run.evaluate_if_due(scalars, last=p.iteration == iterations)
        log.step(p.frames, finished, **scalars)
        done_iters += 1
        enough = bool(stop_after and done_iters >= stop_after)
        if time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60 or p.iteration == iterations or enough:
            run.checkpoint()
            last_ckpt = time.monotonic()
        if enough or stop.is_set():
            return
