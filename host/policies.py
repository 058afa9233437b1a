"""edgerl's own networks, built exactly as a user builds theirs: a TorchRL actor plus the env it acts in.

- `dqn`: the tutorial's DQN (Nature CNN on one preprocessed frame).
- `stacked`: the same network on the last 4 frames, stacked by TorchRL's `CatFrames` in the env.
- `lstm`: the tutorial's recurrent policy (python-based LSTMModule), with `InitTracker` and its primer.

`nature_cnn` is the one network factory: the PQN trainer and these
policies build their Q-network with it, so a checkpoint's weights fit the
`stacked` policy. The built-ins then go through the same export path as a
user's policy (`host.bundle.pipeline.export_policy`): no second code path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict.nn import ProbabilisticTensorDictModule
from tensordict.nn import TensorDictModule as Mod
from tensordict.nn import TensorDictSequential as Seq
from torch import nn
from torchrl.envs import CatFrames, InitTracker, TransformedEnv
from torchrl.modules import MLP, ConvNet, EGreedyModule, LSTMModule, QValueModule

from device.manifest import FRAME_SHAPE, EnvSpec
from host.envs import OBS_KEY, make_env

NETWORKS = ("dqn", "stacked", "lstm")
VALUES = "action_value"


@dataclass(frozen=True)
class PolicyConfig:
    """Which network, and how it explores."""

    network: str = "dqn"
    """One of dqn, stacked, lstm."""
    epsilon: float = 0.1
    """E-greedy rate of the stochastic export (the tutorial's eps_init)."""
    stack: int = 4
    """Frames in the stack of the `stacked` policy."""
    lstm_hidden: int = 128
    """Hidden size of the `lstm` policy."""
    layer_norm: bool = False
    """LayerNorm after every layer of the Nature CNN (PQN's network; dqn and stacked only)."""


def nature_cnn(n_actions: int, in_channels: int = 4, layer_norm: bool = False) -> nn.Module:
    """The Nature DQN network (TorchRL's ConvNet.default_atari_dqn), its lazy layers materialised.

    With `layer_norm`, PQN's variant: LayerNorm over each layer's whole
    output, which is what lets PQN learn without a target network or replay.
    """
    if layer_norm:
        net = nn.Sequential(
            nn.Conv2d(in_channels, 32, 8, stride=4), nn.LayerNorm([32, 20, 20]), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.LayerNorm([64, 9, 9]), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.LayerNorm([64, 7, 7]), nn.ReLU(),
            nn.Flatten(-3), nn.Linear(64 * 7 * 7, 512), nn.LayerNorm(512), nn.ReLU(),
            nn.Linear(512, n_actions),
        )
        for layer in net:  # PQN's (and CleanRL's) initialisation: orthogonal, gain sqrt(2), zero bias
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.orthogonal_(layer.weight, 2 ** 0.5)
                nn.init.zeros_(layer.bias)
        return net
    net = ConvNet.default_atari_dqn(num_actions=n_actions)
    net(torch.zeros(1, in_channels, *FRAME_SHAPE))
    return net


@dataclass
class BuiltPolicy:
    """A built-in policy: the actor to export, its trainable part (what a checkpoint stores) and its env."""

    network: str
    actor: Seq
    qnet: nn.Module
    env: TransformedEnv


def build_env(cfg: PolicyConfig, spec: EnvSpec, lstm: LSTMModule | None = None) -> TransformedEnv:
    """The env a built-in policy acts in: the tutorial's preprocessing, plus a frame stack or the LSTM's state."""
    env = make_env(spec)
    if cfg.network == "stacked":
        # Zero padding: what the PQN trainer's stacks start each episode with (host.frame_stack).
        env.append_transform(CatFrames(N=cfg.stack, dim=-3, in_keys=[OBS_KEY], padding="constant"))
    if lstm is not None:
        env.append_transform(InitTracker())
        env.append_transform(lstm.make_tensordict_primer())
    return env


def build_policy(cfg: PolicyConfig, spec: EnvSpec, seed: int = 0) -> BuiltPolicy:
    """Build one of the three policies with freshly initialised, materialised weights, and its env."""
    if cfg.network not in NETWORKS:
        raise ValueError(f"unknown built-in network {cfg.network!r}; choose one of {', '.join(NETWORKS)}")
    torch.manual_seed(seed)
    lstm = None
    if cfg.network == "lstm":
        lstm = LSTMModule(
            input_size=64 * 7 * 7,
            hidden_size=cfg.lstm_hidden,
            in_keys=["embed", "recurrent_state_h", "recurrent_state_c"],
            out_keys=["embed_lstm", ("next", "recurrent_state_h"), ("next", "recurrent_state_c")],
        ).make_python_based()
    env = build_env(cfg, spec, lstm)
    n_actions = env.action_spec.space.n
    action_spec = env.action_spec
    head = [QValueModule(spec=action_spec, action_value_key=VALUES), EGreedyModule(spec=action_spec,
                                                                                     eps_init=cfg.epsilon)]
    if lstm is None:
        qnet = nature_cnn(n_actions, in_channels=cfg.stack if cfg.network == "stacked" else 1,
                          layer_norm=cfg.layer_norm)
        body = [Mod(qnet, in_keys=[OBS_KEY], out_keys=[VALUES])]
    else:
        conv = ConvNet(activation_class=nn.ReLU, num_cells=[32, 64, 64], kernel_sizes=[8, 4, 3], strides=[4, 2, 1])
        conv(torch.zeros(1, 1, *FRAME_SHAPE))
        mlp = MLP(in_features=cfg.lstm_hidden, out_features=n_actions, num_cells=[], activation_class=nn.ReLU)
        qnet = nn.ModuleDict({"conv": conv, "lstm": lstm, "head": mlp})
        body = [Mod(conv, in_keys=[OBS_KEY], out_keys=["embed"]), lstm,
                Mod(mlp, in_keys=["embed_lstm"], out_keys=[VALUES])]
    actor = Seq(*body, *head)
    return BuiltPolicy(cfg.network, actor, qnet, env)


def set_epsilon(actor: Seq, epsilon: float) -> None:
    """Set the e-greedy rate of every EGreedyModule in an actor."""
    for module in actor.modules():
        if isinstance(module, EGreedyModule):
            module.eps.fill_(epsilon)


def explores(actor: nn.Module) -> bool:
    """Whether the actor draws anything under TorchRL's random exploration.

    A distribution, or an exploration module (EGreedyModule, AdditiveGaussianModule, OrnsteinUhlenbeckProcessModule).
    """
    return any(isinstance(m, ProbabilisticTensorDictModule)
               or type(m).__module__.startswith("torchrl.modules.tensordict_module.exploration")
               for m in actor.modules())


def epsilon_of(actor: nn.Module) -> float:
    """The e-greedy rate of the actor's EGreedyModule, 0 when it has none."""
    for module in actor.modules():
        if isinstance(module, EGreedyModule):
            return float(module.eps)
    return 0.0
