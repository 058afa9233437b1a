"""Policy x env configurations drawn from the whole space a TorchRL user can build, not picked by hand.

`draw(seed, index)` builds one case from its own random stream: a game
(pixels) or a sensor env (vectors, discrete or continuous), a sequence of
transforms in an order the env accepts (resizes to odd and non-square
sizes with each interpolation, crops, grayscale, frame stacks before or
after normalisation, VecNorm of either version, channels-last screens,
clips, renamed keys, several observations), batched in a SerialEnv or a
ParallelEnv or not, and a policy of any kind the README takes (Q-value,
C51, categorical, deterministic, TanhNormal, Normal; recurrent or not;
exported deterministic or stochastic). The same (seed, index) always draws
the same case: a failure is replayed with `python tests/drawn_cases.py
SEED INDEX`.

What later generations added (a second screen view, channels-last, pixel
VecNorm, VecNorm v1, ParallelEnv) is drawn from a stream of its own,
`"{seed}:{index}:wider"`, so the cases drawn before keep their draws.
"""

from __future__ import annotations

import copy
import functools
import random
import sys
from dataclasses import dataclass, field

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule, TensorDictSequential
from torch import nn
from torch.distributions import Categorical
from torchrl import envs, modules

from host.envs import empty_stack_buffers, is_vecnorm

GAMES = ("ALE/Pong-v5", "ALE/Breakout-v5", "ALE/Freeway-v5")
SENSORS = {"CartPole-v1": "discrete", "Pendulum-v1": "continuous"}
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
DISCRETE_HEADS = ("qvalue", "c51", "categorical")
CONTINUOUS_HEADS = ("deterministic", "tanh", "normal")


@dataclass
class Drawn:
    """One drawn case: what it is (for the failure message) and how to build it."""

    seed: int
    index: int
    steps: list[str] = field(default_factory=list)
    stochastic: bool = False
    refusal: str = ""
    """Words the one-line refusal must hold when the case has what the board cannot take; empty: must be taken."""
    may_refuse: str = ""
    """Words of a refusal that depends on what the env's data turn out to be (taken otherwise, and then exact)."""

    def say(self, what: str) -> None:
        self.steps.append(what)

    def __str__(self) -> str:
        return f"case {self.seed}:{self.index}: " + ", ".join(self.steps)


class _Cat(nn.Module):
    """Several observations read as one vector (a user's multi-sensor input)."""

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        return torch.cat([p.flatten(-1) for p in parts], -1)


class _LazyCat(nn.Module):
    """Several observations into a layer that sizes itself at its first call (TorchRL's MLP without in_features)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Sequential(nn.LazyLinear(8), nn.Tanh())

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        return self.layer(torch.cat([p.flatten(-1) for p in parts], -1))


class _ChannelsFirst(nn.Module):
    """A user's network that takes the channels-last screen a PermuteTransform left."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.movedim(-1, -3)


class _Towers(nn.Module):
    """One conv tower per screen view, their features side by side."""

    def __init__(self, towers: list[nn.Module]) -> None:
        super().__init__()
        self.towers = nn.ModuleList(towers)

    def forward(self, *views: torch.Tensor) -> torch.Tensor:
        return torch.cat([tower(view) for tower, view in zip(self.towers, views, strict=True)], -1)


def _pixel_transforms(rng: random.Random, case: Drawn) -> tuple[list, str, tuple[int, int, int]]:
    """ToTensorImage into a key of the user's choice, then 1-4 image transforms; the key and its final shape."""
    key = rng.choice(["pixels", "img", "screen"])
    out = [envs.ToTensorImage(in_keys=["pixels"], out_keys=[key])]
    c, h, w = 3, 210, 160
    case.say(f"ToTensorImage->{key}")
    resized = False
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["resize", "resize", "gray", "center", "crop", "stack", "norm", "clip"])
        if kind == "resize" or (kind in ("stack", "norm") and not resized):  # keep the network small
            h, w = rng.randint(9, 96), rng.randint(9, 96)
            mode = rng.choice(INTERPOLATIONS)
            out.append(envs.Resize(h, w, interpolation=mode, in_keys=[key]))
            case.say(f"Resize({h},{w},{mode})")
            resized = True
        if kind == "gray" and c == 3:
            out.append(envs.GrayScale(in_keys=[key]))
            c = 1
            case.say("GrayScale")
        elif kind == "center" and h > 8 and w > 8:
            h, w = rng.randint(8, h), rng.randint(8, w)
            out.append(envs.CenterCrop(h, w, in_keys=[key]))
            case.say(f"CenterCrop({h},{w})")
        elif kind == "crop" and h > 8 and w > 8:
            ch, cw = rng.randint(8, h), rng.randint(8, w)
            top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
            out.append(envs.Crop(ch, cw, top=top, left=left, in_keys=[key]))
            h, w = ch, cw
            case.say(f"Crop({ch}x{cw}@{top},{left})")
        elif kind == "stack":
            n = rng.randint(2, 4)
            out.append(envs.CatFrames(N=n, dim=-3, in_keys=[key]))
            c *= n
            case.say(f"CatFrames({n})")
        elif kind == "norm":
            loc, scale = rng.uniform(-0.5, 0.5), rng.uniform(0.5, 4.0)
            std = rng.random() < 0.5
            out.append(envs.ObservationNorm(loc=loc, scale=scale, standard_normal=std, in_keys=[key]))
            case.say(f"ObservationNorm({loc:.2f},{scale:.2f},{'std' if std else 'affine'})")
        elif kind == "clip":
            out.append(envs.ClipTransform(in_keys=[key], low=0.1, high=0.8))
            case.say("Clip")
    return out, key, (c, h, w)


def _wider_pixels(wide: random.Random, case: Drawn, out: list, key: str) -> list[str]:
    """A second view of the screen somewhere in the chain, a VecNorm after it all, a channels-last screen."""
    keys = [key]
    if wide.random() < 0.2:  # several observations: a thumbnail beside the main screen, each read by the network
        h, w, mode = wide.randint(9, 48), wide.randint(9, 48), wide.choice(INTERPOLATIONS)
        where = wide.randint(1, len(out))
        out.insert(where, envs.Resize(h, w, interpolation=mode, in_keys=[key], out_keys=["thumb"]))
        keys.append("thumb")
        case.say(f"thumb@{where}=Resize({h},{w},{mode})")
    if wide.random() < 0.15:  # as TorchRL's Atari references put it: after the stack
        version = wide.choice(["v1", "v2"])
        out.append(envs.VecNorm(in_keys=[key], decay=0.99) if version == "v1" else envs.VecNormV2(in_keys=[key]))
        case.say(f"VecNorm({version})")
        if any(isinstance(t, envs.Resize) and not t.interpolation.value.startswith("nearest") for t in out):
            # pixels that never vary sit at the VecNorm's scale floor, which magnifies onnxruntime's blend rounding
            case.may_refuse = "onnxruntime rounds otherwise than torch"
    if wide.random() < 0.15:
        out.append(envs.PermuteTransform((-2, -1, -3), in_keys=[key]))
        case.say("channels-last")
    return keys


def _sensor_transforms(rng: random.Random, wide: random.Random, case: Drawn, size: int) -> tuple[list, list[str], int]:
    """0-4 vector transforms; the keys the policy reads and their total width."""
    out: list = [envs.DoubleToFloat()] if rng.random() < 0.3 else []
    keys, width = ["observation"], size
    for _ in range(rng.randint(0, 4)):
        kind = rng.choice(["stack", "stack_new_key", "norm", "vecnorm", "clip", "rename"])
        key = keys[0]
        if kind == "stack":
            n = rng.randint(2, 4)
            out.append(envs.CatFrames(N=n, dim=-1, in_keys=[key]))
            width *= n
        elif kind == "stack_new_key" and len(keys) == 1:  # several observations: the reading and its history
            n = rng.randint(2, 3)
            out.append(envs.CatFrames(N=n, dim=-1, in_keys=[key], out_keys=["history"]))
            keys.append("history")
            width += width * n
        elif kind == "norm":
            std = rng.random() < 0.5
            out.append(envs.ObservationNorm(loc=rng.uniform(-1, 1), scale=rng.uniform(0.5, 3),
                                            standard_normal=std, in_keys=[key]))
        elif kind == "vecnorm":
            if wide.random() < 0.4:  # the version torchrl 0.14's VecNorm() still builds, with its FutureWarning
                out.append(envs.VecNorm(in_keys=[key], decay=0.99))
                kind = "vecnorm(v1)"
            else:
                out.append(envs.VecNormV2(in_keys=[key]))
        elif kind == "clip":
            out.append(envs.ClipTransform(in_keys=[key], low=-1.5, high=1.5))
        elif kind == "rename" and key == "observation" and len(keys) == 1:
            out.append(envs.RenameTransform(in_keys=["observation"], out_keys=["reading"]))
            keys = ["reading"]
        else:
            continue
        case.say(kind)
    return out, keys, width


def _features(keys: list[str], shapes: dict[str, tuple], pixels: bool, last: bool, lazy: bool = False
              ) -> tuple[TensorDictModule, int]:
    """The user's encoder from the observation key(s) to an 'embed' vector, and its width.

    `last`: the first screen is channels-last (a PermuteTransform), so its tower turns it back first. `lazy`: its
    first layer sizes itself at its first call (LazyConv2d, LazyLinear: TorchRL's ConvNet and MLP by default), as
    the Freeway GRU a user brought (issue 37) did; its width is measured on a copy, so the policy stays unsized.
    """
    if pixels:
        towers = []
        for n, key in enumerate(keys):
            c, h, w = shapes[key] if not (last and n == 0) else (shapes[key][2], *shapes[key][:2])
            k = max(1, min(8, h, w))
            conv = nn.LazyConv2d(4, k, stride=k) if lazy else nn.Conv2d(c, 4, k, stride=k)
            tower = nn.Sequential(conv, nn.ReLU(), nn.Flatten(-3))
            towers.append(nn.Sequential(_ChannelsFirst(), tower) if last and n == 0 else tower)
        net = _Towers(towers)
        width = copy.deepcopy(net)(*(torch.zeros(1, *shapes[key]) for key in keys)).shape[-1]
        return TensorDictModule(net, in_keys=keys, out_keys=["embed"]), width
    if lazy:
        return TensorDictModule(_LazyCat(), in_keys=keys, out_keys=["embed"]), 8
    return TensorDictModule(_Cat(), in_keys=keys, out_keys=["embed"]), sum(shapes[k][-1] for k in keys)


def _recurrent(rng: random.Random, case: Drawn, width: int, env_transforms: list) -> tuple[list, int]:
    """A python-based GRU or LSTM on the embedding (its primer and InitTracker on the env), or nothing."""
    if rng.random() < 0.6:
        return [], width
    hidden = rng.choice([8, 16])
    if rng.random() < 0.5:
        rnn = modules.GRUModule(input_size=width, hidden_size=hidden, in_keys=["embed", "h"],
                                out_keys=["embed_rnn", ("next", "h")]).make_python_based()
        case.say("GRU")
    else:
        rnn = modules.LSTMModule(input_size=width, hidden_size=hidden, in_keys=["embed", "h", "c"],
                                 out_keys=["embed_rnn", ("next", "h"), ("next", "c")]).make_python_based()
        case.say("LSTM")
    env_transforms += [envs.InitTracker(), rnn.make_tensordict_primer()]
    return [rnn], hidden


def _head(rng: random.Random, case: Drawn, body: list, width: int, spec: object, action: str) -> nn.Module:
    """The policy's last part, of a kind the README takes, on the body's features."""
    feat = "embed_rnn" if len(body) > 1 else "embed"
    if action == "discrete":
        kind = rng.choice(DISCRETE_HEADS)
        n = spec.space.n
        case.say(kind)
        if kind == "qvalue":
            return TensorDictSequential(*body, TensorDictModule(nn.Linear(width, n), [feat], ["action_value"]),
                                        modules.QValueModule(spec=spec))
        if kind == "c51":
            atoms = 7
            net = nn.Sequential(nn.Linear(width, atoms * n), nn.Unflatten(-1, (atoms, n)), nn.LogSoftmax(-2))
            values = TensorDictSequential(*body, TensorDictModule(net, [feat], ["action_value"]))
            return modules.DistributionalQValueActor(values, support=torch.linspace(-3, 3, atoms), spec=spec)
        case.stochastic = rng.random() < 0.5
        one_hot = type(spec).__name__.startswith("OneHot")
        logits = TensorDictSequential(*body, TensorDictModule(nn.Linear(width, n), [feat], ["logits"]))
        return modules.ProbabilisticActor(logits, in_keys=["logits"], spec=spec,
                                          distribution_class=modules.OneHotCategorical if one_hot else Categorical)
    kind = rng.choice(CONTINUOUS_HEADS)
    case.say(kind)
    dim = spec.shape[-1]
    if kind == "deterministic":
        return TensorDictSequential(*body, TensorDictModule(nn.Sequential(nn.Linear(width, dim), nn.Tanh()),
                                                            [feat], ["action"]))
    case.stochastic = rng.random() < 0.5
    params = TensorDictSequential(*body, TensorDictModule(nn.Sequential(nn.Linear(width, 2 * dim),
                                                                        NormalParamExtractor()),
                                                          [feat], ["loc", "scale"]))
    if kind == "tanh":
        return modules.ProbabilisticActor(params, in_keys=["loc", "scale"], spec=spec,
                                          distribution_class=modules.TanhNormal,
                                          distribution_kwargs={"low": spec.space.low, "high": spec.space.high})
    return modules.ProbabilisticActor(params, in_keys=["loc", "scale"], spec=spec,
                                      distribution_class=modules.IndependentNormal, safe=True)


def _fresh(transforms: list) -> list:
    """Copies of the transforms for another env: TorchRL's clone() shares CatFrames' lazy stack buffer."""
    copies = [t.clone() for t in transforms]
    for t in copies:
        if isinstance(t, envs.CatFrames):
            empty_stack_buffers(t)
    return copies


def _base(name: str, kwargs: dict) -> envs.GymEnv:
    return envs.GymEnv(name, **kwargs)


def _inside(make_base: functools.partial, transforms: list) -> envs.TransformedEnv:
    """One worker's env: the game and its own copies of the transforms."""
    return envs.TransformedEnv(make_base(), envs.Compose(*_fresh(transforms)))


def _batched(rng: random.Random, wide: random.Random, case: Drawn, make_base, transforms: list):  # noqa: ANN001, ANN202
    """The env as the user trains in it: one env, or a SerialEnv or ParallelEnv with the transforms inside or
    over it. A ParallelEnv gets a lambda (TorchRL wraps it in an EnvCreator, whose env in this process shares
    its statistics with the workers') or a functools.partial (not wrapped: the workers' statistics are theirs
    alone)."""
    layout = rng.choice(["single", "single", "serial_inside", "serial_over"])
    if layout == "single":
        case.say(layout)
        return envs.TransformedEnv(make_base(), envs.Compose(*transforms))
    workers = rng.randint(1, 2)
    batch = envs.SerialEnv
    if wide.random() < 0.25:  # worker processes: a few seconds each to start, so one batched case in four
        batch, layout = envs.ParallelEnv, layout.replace("serial", "parallel")
        if wide.random() < 0.5:
            layout += "(partial)"
    case.say(layout)
    inside, base = functools.partial(_inside, make_base, transforms), make_base
    if not layout.endswith("(partial)"):
        inside, base = (lambda: _inside(make_base, transforms)), (lambda: make_base())  # noqa: PLW0108
    if "_inside" in layout:
        return batch(workers, inside)
    return envs.TransformedEnv(batch(workers, base), envs.Compose(*transforms))


def _refusable(rng: random.Random, case: Drawn, transforms: list, key: str) -> bool:
    """One case in ten also has what the board cannot take (its own stream: the rest of the draw is unchanged).

    A frame-skipping transform, max-pooling over frames, or a VecNorm never stepped; True for the last (the
    env is then not warmed).
    """
    if rng.random() >= 0.1:
        return False
    kind = rng.choice(["FrameSkipTransform", "TimeMaxPool", "cold VecNormV2"])
    case.say(f"+{kind}")
    case.refusal = "VecNormV2 has no statistics yet" if kind == "cold VecNormV2" else kind
    if kind == "FrameSkipTransform":
        transforms.insert(rng.randrange(len(transforms) + 1), envs.FrameSkipTransform(2))
    elif kind == "TimeMaxPool":
        transforms.append(envs.TimeMaxPool(in_keys=[key], T=2))
    else:
        transforms.append(envs.VecNormV2(in_keys=[key]))
    return kind == "cold VecNormV2"


def draw(seed: int, index: int) -> tuple[Drawn, object, object]:
    """Case `index` of the stream `seed`: (what it is, policy, env)."""
    rng, wide = random.Random(f"{seed}:{index}"), random.Random(f"{seed}:{index}:wider")
    case = Drawn(seed, index)
    torch.manual_seed(rng.randrange(2**31))
    if rng.random() < 0.5:
        game = rng.choice(GAMES)
        case.say(game)
        one_hot = rng.random() < 0.3
        transforms, key, _ = _pixel_transforms(rng, case)
        keys, pixels, action = _wider_pixels(wide, case, transforms, key), True, "discrete"

        make_base = functools.partial(_base, game, {"frame_skip": 4, "categorical_action_encoding": not one_hot})
    else:
        name = rng.choice(sorted(SENSORS))
        case.say(name)
        action = SENSORS[name]
        size = 4 if name == "CartPole-v1" else 3
        transforms, keys, _ = _sensor_transforms(rng, wide, case, size)
        pixels = False
        one_hot = rng.random() < 0.3

        make_base = functools.partial(_base, name, {"categorical_action_encoding": not one_hot})
    transforms.append(envs.StepCounter())
    probe = envs.TransformedEnv(make_base(), envs.Compose(*_fresh(transforms)))
    first = probe.reset()  # the shapes the env really gives (a user sizes the network on them too)
    shapes = {key: tuple(first[key].shape) for key in keys}
    last = any(isinstance(t, envs.PermuteTransform) for t in transforms)
    # Drawn from a stream of its own, so the cases drawn before lazy layers were keep their configuration.
    lazy = random.Random(f"{seed}:{index}:lazy").random() < 0.25
    if lazy:
        case.steps.insert(0, "lazy")
    features, width = _features(keys, shapes, pixels, last, lazy)
    body, width = _recurrent(rng, case, width, transforms)
    policy = _head(rng, case, [features, *body], width, probe.action_spec, action)
    probe.close()
    cold = _refusable(random.Random(f"{seed}:{index}:refusable"), case, transforms, keys[0])
    env = _batched(rng, wide, case, make_base, transforms)
    if not cold and any(is_vecnorm(t) for t in transforms):
        env.set_seed(0)
        env.rollout(100, break_when_any_done=False)  # VecNorm's statistics, as a user's training leaves them
    if case.stochastic:
        case.say("stochastic")
    return case, policy, env


def summary(path: str) -> str:
    """The outcome counts of a run's record (build/drawn-matrix/SEED.jsonl), a case's last outcome counting."""
    import json
    from collections import Counter
    from pathlib import Path

    last = {}
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        last[record["case"]] = record["outcome"]
    counts = Counter(last.values())
    return (f"{len(last)} drawn cases: {counts['taken']} taken (verified exactly), {counts['refused']} refused "
            f"in one line before writing, {counts['unfaithful']} exported but unfaithful")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--summary"]:
        print(summary(sys.argv[2]))
    else:
        drawn, _, built = draw(int(sys.argv[1]), int(sys.argv[2]))
        print(drawn)
        if not built.is_closed:  # a ParallelEnv's workers would keep this process from exiting
            built.close()
