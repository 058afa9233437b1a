"""PQN's trainer against a plain TorchRL training loop, alternated in one run (order flipped each round).

    python bench/train_speed.py [--rounds 2] [--iterations 4] [--busy N]

The baseline is held here, written as TorchRL's own recipes write a DQN-style
loop: a `Collector` (SyncDataCollector before torchrl 0.14) over a `SerialEnv` of edgerl's stacked Pong env
(the env's transforms do the preprocessing), then `DQNLoss` on the collected
batch, one after the other in one process with two torch threads. It learns
from the same network (PQN's LayerNorm Nature CNN), the same batch
(16 games x 64 steps) and the same passes (4 epochs x 4 minibatches). PQN
runs its `edgerl train` defaults: ale-py's vector env, the collector in its
own process, learning overlapped with collection, one thread per process.

--busy N keeps N other processes spinning on the CPU meanwhile.

Prints each trainer's steady-state frames/s (median wall time per iteration,
the first dropped: it pays start-up costs) and the ratio PQN / baseline.
"""

import argparse
import contextlib
import csv
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tensordict.nn import TensorDictSequential  # noqa: E402
from torchrl.collectors import Collector  # noqa: E402  (SyncDataCollector, renamed in torchrl 0.14)
from torchrl.envs import SerialEnv  # noqa: E402
from torchrl.objectives import DQNLoss  # noqa: E402

from device.manifest import EnvSpec  # noqa: E402
from host.policies import PolicyConfig, build_env, build_policy  # noqa: E402
from host.train.pqn import PQNConfig  # noqa: E402
from host.train.trainer import train_pqn  # noqa: E402


def column(run: Path, name: str) -> list[float]:
    with open(run / "logs" / "train" / "scalars" / f"{name}.csv") as fh:
        return [float(r[1]) for r in csv.reader(fh) if r]


def pqn_rate(iterations: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = PQNConfig(out=Path(tmp) / "run", frames=PQNConfig().frames_per_rollout * iterations,
                        eval_every=10**12)
        train_pqn(cfg, progress=False)
        return cfg.frames_per_rollout / statistics.median(column(cfg.out, "iteration_s")[1:])


def torchrl_rate(iterations: int) -> float:
    """The baseline: collect with TorchRL's collector, then learn with TorchRL's DQNLoss, in turn."""
    pqn = PQNConfig()
    torch.set_num_threads(2)
    policy_cfg = PolicyConfig(network="stacked", layer_norm=True, epsilon=0.1)
    built = build_policy(policy_cfg, EnvSpec())
    env = SerialEnv(pqn.envs, lambda: build_env(policy_cfg, EnvSpec()))
    per = pqn.envs * pqn.steps
    collector = Collector(env, built.actor, frames_per_batch=per, total_frames=per * iterations)
    loss = DQNLoss(TensorDictSequential(*list(built.actor)[:2]), action_space=env.action_spec, delay_value=False)
    optim = torch.optim.RAdam(built.qnet.parameters(), lr=pqn.lr)
    times, last = [], time.perf_counter()
    for batch in collector:
        flat = batch.reshape(-1)
        for _ in range(pqn.epochs):
            for idx in torch.randperm(len(flat)).chunk(pqn.minibatches):
                value = loss(flat[idx])["loss"]
                optim.zero_grad()
                value.backward()
                optim.step()
        now = time.perf_counter()
        times.append(now - last)
        last = now
    collector.shutdown()
    return per * pqn.env.frame_skip / statistics.median(times[1:])


def spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def busy(processes: int):
    """`processes` CPU-bound processes for the duration of the block."""
    spinners = [mp.get_context("spawn").Process(target=spin, daemon=True) for _ in range(processes)]
    for p in spinners:
        p.start()
    try:
        yield
    finally:
        for p in spinners:
            p.terminate()
            p.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--busy", type=int, default=0, help="other CPU-bound processes running meanwhile")
    args = parser.parse_args()
    base, new = [], []
    runs = [(base, lambda: torchrl_rate(args.iterations)), (new, lambda: pqn_rate(args.iterations * 3))]
    for r in range(args.rounds):
        # The order flips every round: whatever runs right after the other pays nothing extra on average.
        for rates, rate in runs if r % 2 == 0 else runs[::-1]:
            with busy(args.busy):
                rates.append(rate())
        print(f"round {r + 1}: TorchRL collector + DQNLoss {base[-1]:.0f} frames/s, pqn {new[-1]:.0f}", flush=True)
    b, n = statistics.median(base), statistics.median(new)
    print(f"baseline (TorchRL SyncDataCollector + DQNLoss, 2 threads): {b:.0f} frames/s; pqn trainer: {n:.0f} "
          f"frames/s, {n / b:.2f}x (medians of {args.rounds} rounds"
          f"{f', {args.busy} busy processes beside' if args.busy else ''})")


if __name__ == "__main__":
    main()
