"""PQN's learner step in each layout, side by side in one process: bf16 NCHW, bf16 channels-last, and both
under torch.compile.

    python bench/learner_layout.py [--rounds 3] [--batch 256]

One torch thread (what the trainer's learner gets). Prints microseconds per sample for forward + backward +
clip + RAdam on the LayerNorm Nature CNN, and each variant's ratio to eager NCHW. Compile times are printed
separately and not counted.
"""

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from host.policies import nature_cnn  # noqa: E402


def variant(channels_last: bool, compiled: bool):
    net = nature_cnn(6, 4, layer_norm=True)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.RAdam(net.parameters(), lr=1e-4)

    def forward_backward(x, a, y):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            q = net(x).float()
        loss = nn.functional.mse_loss(q.gather(1, a[:, None]).squeeze(1), y)
        loss.backward()

    fb = torch.compile(forward_backward) if compiled else forward_backward

    def step(x, a, y):
        fb(x, a, y)
        nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        opt.zero_grad()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    x, a, y = torch.rand(args.batch, 4, 84, 84), torch.randint(6, (args.batch,)), torch.rand(args.batch)
    names = {(False, False): "bf16 NCHW", (True, False): "bf16 channels-last",
             (False, True): "bf16 NCHW, compiled", (True, True): "bf16 channels-last, compiled"}
    steps = {}
    for key, name in names.items():
        steps[key] = variant(*key)
        started = time.perf_counter()
        steps[key](x, a, y)
        print(f"{name}: first step {time.perf_counter() - started:.1f} s", flush=True)
    times: dict[tuple, list[float]] = {key: [] for key in names}
    for _ in range(args.rounds):  # interleaved, so every variant sees the same machine load
        for key, step in steps.items():
            for _ in range(3):
                started = time.perf_counter()
                step(x, a, y)
                times[key].append((time.perf_counter() - started) / args.batch * 1e6)
    base = statistics.median(times[(False, False)])
    for key, name in names.items():
        us = statistics.median(times[key])
        print(f"{name:<30} {us:6.0f} us/sample  {us / base:.2f}x of bf16 NCHW")


if __name__ == "__main__":
    main()
