"""Policy x transform combinations a TorchRL user brings: each case builds (policy, env) as a user would.

The matrix test exports every case and asserts it is either taken (exported,
verified at 100 % actions and max |d| <= 1e-4) or refused in one line that
names the transform or module; docs/policies.md's table is checked
against the same outcomes. Networks are tiny: what is tested is the
plumbing, not the learning.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule, TensorDictSequential
from torch import nn
from torch.distributions import Categorical
from torchrl.envs import (
    CatFrames,
    CenterCrop,
    ClipTransform,
    Compose,
    Crop,
    DoubleToFloat,
    ExcludeTransform,
    FlattenObservation,
    FrameSkipTransform,
    GrayScale,
    GymEnv,
    InitTracker,
    ObservationNorm,
    PermuteTransform,
    RenameTransform,
    Resize,
    StepCounter,
    TimeMaxPool,
    ToTensorImage,
    TransformedEnv,
    UnsqueezeTransform,
    VecNorm,
    VecNormV2,
)
from torchrl.modules import (
    MLP,
    DistributionalQValueActor,
    GRUModule,
    IndependentNormal,
    LSTMModule,
    OneHotCategorical,
    ProbabilisticActor,
    QValueActor,
    QValueModule,
    TanhNormal,
)

Case = Callable[[], tuple]


def _pixels(*extra) -> TransformedEnv:  # noqa: ANN002
    env = GymEnv("ALE/Breakout-v5", frame_skip=4, categorical_action_encoding=True)
    return TransformedEnv(env, Compose(ToTensorImage(in_keys=["pixels"], out_keys=["img"]), *extra))


def _conv_q(env: TransformedEnv, key: str = "img", flat: bool = False) -> QValueActor:
    shape = env.observation_spec[key].shape
    n = env.action_spec.space.n
    if flat:
        net = MLP(in_features=shape[-1], out_features=n, num_cells=[16])
    else:
        net = nn.Sequential(nn.Conv2d(shape[-3], 4, 8, stride=8), nn.ReLU(), nn.Flatten(-3), nn.LazyLinear(n))
        net(torch.zeros(shape))
    return QValueActor(net, in_keys=[key], spec=env.action_spec)


def _pixel_case(*transforms, key: str = "img", flat: bool = False) -> Case:  # noqa: ANN002
    def make() -> tuple:
        torch.manual_seed(0)
        env = _pixels(*transforms)
        return _conv_q(env, key, flat), env
    return make


def _cartpole(*extra, one_hot: bool = False) -> TransformedEnv:  # noqa: ANN002
    env = GymEnv("CartPole-v1", categorical_action_encoding=not one_hot)
    return TransformedEnv(env, Compose(StepCounter(), *extra))


def _pendulum(*extra) -> TransformedEnv:  # noqa: ANN002
    return TransformedEnv(GymEnv("Pendulum-v1"), Compose(StepCounter(), *extra))


def _vector_q(*transforms, key: str = "observation", size: int = 4) -> Case:  # noqa: ANN002
    def make() -> tuple:
        torch.manual_seed(0)
        env = _cartpole(*transforms)
        _warm(env)
        return QValueActor(MLP(in_features=size, out_features=2, num_cells=[16]), in_keys=[key],
                           spec=env.action_spec), env
    return make


def _warm(env: TransformedEnv) -> None:
    """Statistics for VecNorm / ObservationNorm, gathered as a user would before export."""
    for t in env.transform:
        if isinstance(t, ObservationNorm):
            t.init_stats(num_iter=100, reduce_dim=0, cat_dim=0)
    if any(type(t).__name__ in ("VecNorm", "VecNormV2") for t in env.transform):
        env.set_seed(0)
        env.rollout(200, break_when_any_done=False)


def _sequential() -> tuple:
    torch.manual_seed(0)
    env = _cartpole()
    body = TensorDictModule(MLP(in_features=4, out_features=16, num_cells=[]), ["observation"], ["hidden"])
    head = TensorDictModule(nn.Linear(16, 2), ["hidden"], ["action_value"])
    return TensorDictSequential(body, head, QValueModule(spec=env.action_spec)), env


def _distributional() -> tuple:
    torch.manual_seed(0)
    env = _cartpole()
    atoms = 11
    net = nn.Sequential(MLP(in_features=4, out_features=atoms * 2, num_cells=[16]), nn.Unflatten(-1, (atoms, 2)),
                        nn.LogSoftmax(-2))
    return DistributionalQValueActor(net, in_keys=["observation"], support=torch.linspace(-5, 5, atoms),
                                     spec=env.action_spec), env


def _categorical(one_hot: bool = False) -> Case:
    def make() -> tuple:
        torch.manual_seed(0)
        env = _cartpole(one_hot=one_hot)
        logits = TensorDictModule(MLP(in_features=4, out_features=2, num_cells=[16]), ["observation"], ["logits"])
        return ProbabilisticActor(logits, in_keys=["logits"], spec=env.action_spec,
                                  distribution_class=OneHotCategorical if one_hot else Categorical), env
    return make


def _recurrent(kind: str) -> Case:
    def make() -> tuple:
        torch.manual_seed(0)
        env = _cartpole(InitTracker())
        if kind == "gru":
            rnn = GRUModule(input_size=4, hidden_size=8, in_keys=["observation", "h"],
                            out_keys=["feat", ("next", "h")]).make_python_based()
        else:
            rnn = LSTMModule(input_size=4, hidden_size=8, in_keys=["observation", "h", "c"],
                             out_keys=["feat", ("next", "h"), ("next", "c")]).make_python_based()
        env.append_transform(rnn.make_tensordict_primer())
        head = TensorDictModule(nn.Linear(8, 2), ["feat"], ["action_value"])
        return TensorDictSequential(rnn, head, QValueModule(spec=env.action_spec)), env
    return make


def _continuous(dist: str, *transforms) -> Case:  # noqa: ANN002
    def make() -> tuple:
        torch.manual_seed(0)
        env = _pendulum(*transforms)
        _warm(env)
        if dist == "module":  # a deterministic actor: torque straight from an MLP
            return TensorDictModule(nn.Sequential(MLP(in_features=3, out_features=1, num_cells=[16]), nn.Tanh()),
                                    ["observation"], ["action"]), env
        net = nn.Sequential(MLP(in_features=3, out_features=2, num_cells=[16]), NormalParamExtractor())
        params = TensorDictModule(net, ["observation"], ["loc", "scale"])
        if dist == "tanh":
            return ProbabilisticActor(params, in_keys=["loc", "scale"], spec=env.action_spec,
                                      distribution_class=TanhNormal,
                                      distribution_kwargs={"low": env.action_spec.space.low,
                                                           "high": env.action_spec.space.high}), env
        return ProbabilisticActor(params, in_keys=["loc", "scale"], spec=env.action_spec,
                                  distribution_class=IndependentNormal, safe=True), env
    return make


class _Gate(nn.Module):
    """A user's layer that branches on its input's values: what torch.export cannot capture."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Doubles positive inputs, the Python way."""
        if (x > 0).any():
            return x * 2
        return x


def _branching() -> tuple:
    env = _cartpole()
    net = nn.Sequential(nn.Linear(4, 2), _Gate())
    return QValueActor(net, in_keys=["observation"], spec=env.action_spec), env


def _recurrent_mode_gru() -> tuple:
    env = _cartpole(InitTracker())
    gru = GRUModule(input_size=4, hidden_size=8, in_keys=["observation", "h"], out_keys=["feat", ("next", "h")],
                    default_recurrent_mode=True).make_python_based()
    env.append_transform(gru.make_tensordict_primer())
    head = TensorDictModule(nn.Linear(8, 2), ["feat"], ["action_value"])
    return TensorDictSequential(gru, head, QValueModule(spec=env.action_spec)), env


CASES: dict[str, Case] = {
    # module kinds
    "TensorDictModule (deterministic actor)": _continuous("module"),
    "TensorDictSequential + QValueModule": _sequential,
    "QValueActor": _vector_q(),
    "DistributionalQValueActor (C51)": _distributional,
    "ProbabilisticActor, Categorical": _categorical(),
    "ProbabilisticActor, OneHotCategorical": _categorical(one_hot=True),
    "ProbabilisticActor, TanhNormal": _continuous("tanh"),
    "ProbabilisticActor, IndependentNormal, safe=True": _continuous("normal"),
    "LSTMModule (python-based)": _recurrent("lstm"),
    "GRUModule (python-based)": _recurrent("gru"),
    # transforms on pixels
    "ToTensorImage + Resize + GrayScale": _pixel_case(Resize(42, 42, in_keys=["img"]), GrayScale(in_keys=["img"])),
    "CenterCrop": _pixel_case(CenterCrop(128, 160, in_keys=["img"]), Resize(32, 32, in_keys=["img"])),
    "Crop": _pixel_case(Crop(128, 160, top=30, left=16, in_keys=["img"]), Resize(32, 32, in_keys=["img"])),
    "PermuteTransform": _pixel_case(Resize(32, 40, in_keys=["img"]),
                                    PermuteTransform([-3, -1, -2], in_keys=["img"])),
    "UnsqueezeTransform": _pixel_case(Resize(32, 32, in_keys=["img"]), GrayScale(in_keys=["img"]),
                                      UnsqueezeTransform(dim=-4, in_keys=["img"])),
    "FlattenObservation": _pixel_case(Resize(16, 16, in_keys=["img"]), GrayScale(in_keys=["img"]),
                                      FlattenObservation(-3, -1, in_keys=["img"]), flat=True),
    "RenameTransform": _pixel_case(Resize(32, 32, in_keys=["img"]),
                                   RenameTransform(in_keys=["img"], out_keys=["frame"]), key="frame"),
    "ExcludeTransform": _pixel_case(Resize(32, 32, in_keys=["img"]), ExcludeTransform("pixels")),
    "ClipTransform": _pixel_case(Resize(32, 32, in_keys=["img"]), ClipTransform(in_keys=["img"], low=0.1,
                                                                                high=0.8)),
    "CatFrames (same padding)": _pixel_case(Resize(32, 32, in_keys=["img"]), GrayScale(in_keys=["img"]),
                                            CatFrames(N=3, dim=-3, in_keys=["img"])),
    # transforms on sensor vectors
    "DoubleToFloat": _continuous("tanh", DoubleToFloat()),
    "ObservationNorm": _vector_q(ObservationNorm(in_keys=["observation"], standard_normal=True)),
    "VecNorm (v1)": _vector_q(VecNorm(in_keys=["observation"], new_api=False)),
    "VecNormV2": _continuous("tanh", VecNormV2(in_keys=["observation"])),
    "CatFrames on a vector": _vector_q(CatFrames(N=3, dim=-1, in_keys=["observation"]), size=12),
    "ClipTransform on a vector": _vector_q(ClipTransform(in_keys=["observation"], low=-1.0, high=1.0)),
    # refused, each in one line that says what to do
    "FrameSkipTransform": _pixel_case(FrameSkipTransform(2), Resize(32, 32, in_keys=["img"])),
    "TimeMaxPool": _pixel_case(Resize(32, 32, in_keys=["img"]), TimeMaxPool(in_keys=["img"])),
    "ObservationNorm without statistics": lambda: _vector_q()()[:1] + (
        _cartpole(ObservationNorm(in_keys=["observation"], loc=None, scale=None)),),
    "VecNorm without statistics": lambda: _vector_q()()[:1] + (_cartpole(VecNormV2(in_keys=["observation"])),),
    "GRUModule in recurrent mode": _recurrent_mode_gru,
    "a layer that branches on tensor values": _branching,
}

REFUSED: dict[str, str] = {
    "FrameSkipTransform": "set frame_skip on the GymEnv",
    "TimeMaxPool": "max-pooling over frames",
    "ObservationNorm without statistics": "call init_stats()",
    "VecNorm without statistics": "VecNormV2 has no statistics yet",
    "GRUModule in recurrent mode": "default_recurrent_mode=False",
    "a layer that branches on tensor values": "_Gate.forward",
}
"""The refused cases and words their one-line error must hold."""
