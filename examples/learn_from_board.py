"""Learn from what a board did: its recorded decisions, pulled home, distilled into a student, deployed again.

A plant (the cart; the fast variant the tests run):

    # on the board (or under --service): the teacher at work, recorded off its loop's clock
    python -m device serve cart --io examples/cart_io.py:Cart --hz 50 --seconds 60 --record ~/edgerl/data/cart
    edgerl data pull --on pi@board --out data/                            # checked shard by shard
    python examples/learn_from_board.py data/pi_board/cart --out build/student
    edgerl deploy build/student --to pi@board --service --io examples/cart_io.py:Cart --hz 50

A game (the shipped Pong policy; figures in docs/results.md "Learning from a board"):

    edgerl run --on pi@board --episodes 30 --seed 1000 --record pong     # the teacher's games, recorded
    edgerl data pull --on pi@board --out data/
    python examples/learn_from_board.py data/pi_board/pong --env-of models/pong --out build/student-1
    edgerl deploy build/student-1 --to pi@board
    edgerl run --on pi@board --episodes 20 --seed 2000 --record student  # where the student drifts
    edgerl data pull --on pi@board --out data/
    python examples/learn_from_board.py data/pi_board/pong data/pi_board/student --env-of models/pong \
        --relabel-with models/pong --out build/student-2                  # the teacher's labels there (DAgger)
    edgerl evaluate build/student-2                                       # its 10 games, into its manifest
    edgerl deploy build/student-2 --to pi@board --service --waves 1 --canary-games 2 --canary-against models/pong

A game comes back as its seed and actions; `load_episodes` regenerates every frame through the env the teacher
was exported with (for edgerl's own networks, `--env-of` rebuilds it from the teacher's manifest; a user's own
script passes their env to `fit_game`).

Behaviour cloning, not offline Q-learning: a board's recording holds the teacher's own actions for every
state it met, which is exactly what a student must reproduce to replace it (a smaller net for a smaller
board, or one retrained for new hardware); offline Q-learning would need rewards that rank actions the
teacher never took, which a recording of one good controller does not contain. The pieces are TorchRL's:
the data as a `ReplayBuffer` over memory-mapped storage (`host.data.replay_buffer`), `MLP` and `ConvNet`
actors with `QValueModule`'s argmax, and the export of any TorchRL actor.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.envs import EnvBase
from torchrl.modules import MLP, ConvNet, QValueModule

from device import Policy
from device.manifest import EdgerlError, load_bundle
from host.bundle.export import ExportOptions
from host.bundle.pipeline import export_policy
from host.data import load_episodes, replay_buffer
from host.envs import OBS_KEY
from host.policies import PolicyConfig, build_env


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


def game_student(env: EnvBase, channels: list[int], hidden: int) -> TensorDictSequential:
    """A smaller cousin of the Nature CNN on the same stacked frames: its logits, argmax'd by QValueModule.

    LayerNorm after each layer, as in the PQN teacher: a Pong screen differs from the last in a few pixels
    (paddles, ball), and without it the net sat at the actions' prior for the first thousand steps.
    """
    frames = env.fake_tensordict()[OBS_KEY].unsqueeze(0)
    kernels, strides = [8, 4], [4, 2]  # the Nature CNN's first two layers
    shapes, size = [], frames.shape[-1]
    for n, kernel, stride in zip(channels, kernels, strides, strict=True):
        size = (size - kernel) // stride + 1
        shapes.append({"normalized_shape": [n, size, size]})
    conv = ConvNet(num_cells=channels, kernel_sizes=kernels, strides=strides, activation_class=nn.ReLU,
                   norm_class=nn.LayerNorm, norm_kwargs=shapes)
    head = MLP(out_features=env.action_spec.space.n, num_cells=[hidden], activation_class=nn.ReLU,
               norm_class=nn.LayerNorm, norm_kwargs={"normalized_shape": hidden})
    net = nn.Sequential(conv, head)
    net(frames)  # materialise the lazy layers
    return TensorDictSequential(TensorDictModule(net, in_keys=[OBS_KEY], out_keys=["action_value"]),
                                QValueModule(spec=env.action_spec, action_value_key="action_value"))


def teacher_labels(bundle: Path, int8: str | bool = "auto") -> Callable[[TensorDict], TensorDict]:
    """Each recorded game's actions replaced by the teacher's own on the same screens (DAgger's relabelling).

    The teacher is its bundle, run as the board runs it (`device.Policy`): fed the game's raw screens in
    order, its frame stack reset at the episode's start. `int8`: the model the board ran, which a game
    recording names (`model_file` of its run: the board's self-test may have picked the int8 one).
    """
    teacher = Policy.load(bundle, int8=int8)

    def relabel(episode: TensorDict) -> TensorDict:
        teacher.reset()
        chosen = [teacher.act(screen) for screen in episode["pixels"].numpy()]
        episode["action"] = torch.tensor(chosen, dtype=episode["action"].dtype)
        return episode

    return relabel


def fit_game(folders: Path | list[Path], env: EnvBase, steps: int = 6000, seed: int = 0,
             scratch: Path | None = None, channels: tuple[int, ...] = (16, 32), hidden: int = 128,
             relabel_with: Path | None = None, say=print,  # noqa: ANN001
             ) -> tuple[TensorDictSequential, dict[str, float]]:
    """Behaviour cloning on recorded games, regenerated through `env`: (the student, figures).

    `relabel_with`: a teacher bundle whose actions replace the recorded ones, so a student's own recorded
    games (the states it drifts into) teach it what the teacher would have done there.
    """
    torch.manual_seed(seed)
    started = time.perf_counter()
    relabel = teacher_labels(relabel_with) if relabel_with else None
    # Only the frames the policy sees and the action taken: a decision's screens would be 3x more.
    buffer = replay_buffer(folders, env, scratch_dir=scratch, batch_size=128, keys=[OBS_KEY, "action"],
                           transform=relabel)
    loaded = time.perf_counter()
    say(f"{len(buffer)} decisions regenerated through the env in {loaded - started:.0f} s")
    student = game_student(env, list(channels), hidden)
    net = student[0]
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    for step in range(1, steps + 1):
        batch = buffer.sample()
        loss = nn.functional.cross_entropy(net(batch[OBS_KEY]), batch["action"])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 250 == 0 or step == steps:
            say(f"  step {step}/{steps}: loss {loss.item():.3f}")
    with torch.no_grad():
        check = buffer[torch.randint(len(buffer), (4096,))]  # sample() would warn: its batch size is 128
        agreement = (net(check[OBS_KEY]).argmax(-1) == check["action"]).float().mean().item()
    figures = {"decisions": float(len(buffer)), "agreement": agreement, "load_seconds": loaded - started,
               "train_seconds": time.perf_counter() - loaded, "steps": float(steps),
               "parameters": float(sum(p.numel() for p in net.parameters()))}
    return student, figures


def main() -> None:
    """Fit a student on a pulled recording and export it as a bundle."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recordings", type=Path, nargs="+",
                        help="pulled recording folders (edgerl data pull --out ...); a plant's: one")
    parser.add_argument("--out", type=Path, required=True, help="the student's bundle folder")
    parser.add_argument("--steps", type=int, default=None, help="gradient steps (default 600, a game's 6000)")
    parser.add_argument("--env-of", type=Path, default=None, metavar="BUNDLE",
                        help="a game's teacher bundle: its env (edgerl's own networks) regenerates the frames")
    parser.add_argument("--relabel-with", type=Path, default=None, metavar="BUNDLE",
                        help="a game's teacher: every recorded action becomes its choice on that screen (DAgger)")
    parser.add_argument("--scratch", type=Path, default=None, help="folder for the memory-mapped replay buffer")
    args = parser.parse_args()
    if args.env_of is None:
        student, example, figures = fit(args.recordings[0], args.steps or 600, scratch=args.scratch)
        print(f"fitted on {figures['decisions']:.0f} decisions in {figures['seconds']:.1f} s: "
              f"mse {figures['mse']:.2e}")
        export_policy(student, None, args.out, example=example)
        return
    teacher = load_bundle(args.env_of)
    env = build_env(PolicyConfig(network=teacher.policy_kind), teacher.env)
    student, figures = fit_game(args.recordings, env, args.steps or 6000, scratch=args.scratch,
                                relabel_with=args.relabel_with)
    print(f"fitted {figures['parameters']:.0f} parameters on {figures['decisions']:.0f} decisions in "
          f"{figures['train_seconds']:.0f} s: {figures['agreement']:.1%} agree with the teacher")
    source = (f"behaviour cloning of {args.env_of} on {', '.join(map(str, args.recordings))}"
              + (f", relabelled by {args.relabel_with}" if args.relabel_with else ""))
    export_policy(student, env, args.out, options=ExportOptions(label=f"{teacher.policy_kind}-student",
                                                                 training=figures, source=source))


if __name__ == "__main__":
    try:
        main()
    except EdgerlError as err:  # a recording that is not whole or not this game's: one line, not a traceback
        sys.exit(f"error: {err}")
