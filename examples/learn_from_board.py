"""Learn from what a board did: its recorded decisions, pulled home, distilled into a student, deployed again.

    # on the board (or under --service): the teacher at work, recorded off its loop's clock
    python -m device serve cart --io examples/cart_io.py:Cart --hz 50 --seconds 60 --record ~/edgerl/data/cart
    edgerl data pull --on pi@board --out data/                            # checked shard by shard
    python examples/learn_from_board.py data/pi_board/cart --out build/student
    edgerl deploy build/student --to pi@board --service --io examples/cart_io.py:Cart --hz 50

Behaviour cloning, not offline Q-learning: a board's recording holds the teacher's own actions for every
state it met, which is exactly what a student must reproduce to replace it (a smaller net for a smaller
board, or one retrained for new hardware); offline Q-learning would need rewards that rank actions the
teacher never took, which a recording of one good controller does not contain. The pieces are TorchRL's:
the data as a `ReplayBuffer` over memory-mapped storage (`host.data.replay_buffer`), an `MLP` actor, and the
export of any TorchRL actor.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.modules import MLP

from host.bundle.pipeline import export_policy
from host.data import load_episodes, replay_buffer


def student_policy(observations: int, actions: int, hidden: int = 16) -> TensorDictSequential:
    """A small MLP actor, tanh-bounded like the teacher's motor."""
    net = MLP(in_features=observations, out_features=actions, num_cells=[hidden], activation_class=nn.Tanh)
    return TensorDictSequential(
        TensorDictModule(net, in_keys=["observation"], out_keys=["force"]),
        TensorDictModule(nn.Tanh(), in_keys=["force"], out_keys=["action"]),
    ).select_out_keys("action")


def fit(folder: Path, steps: int = 600, seed: int = 0, scratch: Path | None = None
        ) -> tuple[TensorDictSequential, TensorDict, dict[str, float]]:
    """Behaviour cloning on the recording: (the student, an example input for its export, figures)."""
    torch.manual_seed(seed)
    data = load_episodes(folder)
    buffer = replay_buffer(folder, scratch_dir=scratch, batch_size=64)
    student = student_policy(data["observation"].shape[-1], data["action"].shape[-1])
    optimiser = torch.optim.Adam(student.parameters(), lr=1e-2)
    started = time.perf_counter()
    for _ in range(steps):
        batch = buffer.sample()
        loss = nn.functional.mse_loss(student(batch.select("observation").clone())["action"], batch["action"])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        final = nn.functional.mse_loss(student(data.select("observation").clone())["action"], data["action"])
    figures = {"decisions": float(data.shape[0]), "mse": float(final), "seconds": time.perf_counter() - started}
    return student, data[0].select("observation").clone(), figures


def main() -> None:
    """Fit a student on a pulled recording and export it as a bundle."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recording", type=Path, help="a pulled recording folder (edgerl data pull --out ...)")
    parser.add_argument("--out", type=Path, required=True, help="the student's bundle folder")
    parser.add_argument("--steps", type=int, default=600, help="gradient steps (default 600)")
    args = parser.parse_args()
    student, example, figures = fit(args.recording, args.steps)
    print(f"fitted on {figures['decisions']:.0f} decisions in {figures['seconds']:.1f} s: mse {figures['mse']:.2e}")
    export_policy(student, None, args.out, example=example)


if __name__ == "__main__":
    main()
