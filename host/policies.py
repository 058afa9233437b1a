"""The three policies of TorchRL's export tutorial, each with its preprocessing in the graph.

- `dqn`: the tutorial's DQN (Nature CNN on one preprocessed frame).
- `stacked`: the same network on the last 4 frames; the stack is explicit state.
- `lstm`: the tutorial's recurrent policy (python-based LSTMModule), hidden states as state.

Every policy is a TensorDictSequential acting on a TensorDict holding the raw
screen under `pixels` and its state inputs; `GraphPolicy` wraps it as a plain
module with named positional inputs and outputs for torch.export and ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule as Mod
from tensordict.nn import TensorDictSequential as Seq
from torch import nn
from torchrl.data import Categorical
from torchrl.modules import MLP, ConvNet, EGreedyModule, LSTMModule, QValueModule

from device.manifest import StatePair
from host.envs import OBS_KEY, SCREEN_KEY, preprocess

KINDS = ("dqn", "stacked", "lstm")
ACTION = "action"
VALUES = "action_value"


@dataclass(frozen=True)
class PolicyConfig:
    """Which network, and how it explores."""

    kind: str = "dqn"
    """One of dqn, stacked, lstm."""
    epsilon: float = 0.1
    """E-greedy rate of the stochastic export (the tutorial's eps_init)."""
    stack: int = 4
    """Frames in the stack of the `stacked` policy."""
    lstm_hidden: int = 128
    """Hidden size of the `lstm` policy."""


class FrameStack(nn.Module):
    """Next stack = previous stack without its oldest frame, plus the new frame."""

    def forward(self, frames: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Shift the stack along the channel axis."""
        return torch.cat([frames[..., 1:, :, :], obs], dim=-3)


@dataclass
class Policy:
    """A TorchRL actor plus the names the graph and manifest use for its I/O."""

    kind: str
    actor: Seq
    """Preprocessing + network + QValueModule + EGreedyModule."""
    qnet: nn.Module
    """The trainable parameters (what a checkpoint stores)."""
    state: list[StatePair]
    state_keys: list[tuple[str, str | tuple[str, ...]]]
    """(input key, output key) in the TensorDict for each state pair."""
    uses_is_init: bool
    epsilon: float

    def initial_state(self) -> list[torch.Tensor]:
        """Zero state tensors, as at episode start."""
        return [torch.zeros(p.shape, dtype=getattr(torch, p.dtype)) for p in self.state]


def _n_actions_spec(n_actions: int) -> Categorical:
    return Categorical(n_actions, shape=(), dtype=torch.int64)


def build_policy(cfg: PolicyConfig, n_actions: int, seed: int = 0) -> Policy:
    """Build one of the three policies with freshly initialised, materialised weights."""
    if cfg.kind not in KINDS:
        raise ValueError(f"unknown policy kind {cfg.kind!r}; choose one of {', '.join(KINDS)}")
    torch.manual_seed(seed)
    spec = _n_actions_spec(n_actions)
    head = [QValueModule(spec=spec, action_value_key=VALUES), EGreedyModule(spec=spec, eps_init=cfg.epsilon)]
    if cfg.kind == "dqn":
        qnet = ConvNet.default_atari_dqn(num_actions=n_actions)
        body = [Mod(qnet, in_keys=[OBS_KEY], out_keys=[VALUES])]
        state: list[StatePair] = []
        keys: list[tuple[str, str | tuple[str, ...]]] = []
        dummy = {}
    elif cfg.kind == "stacked":
        qnet = ConvNet.default_atari_dqn(num_actions=n_actions)
        body = [
            Mod(FrameStack(), in_keys=["frames", OBS_KEY], out_keys=["next_frames"]),
            Mod(qnet, in_keys=["next_frames"], out_keys=[VALUES]),
        ]
        shape = [cfg.stack, 84, 84]
        state = [StatePair("frames", "next_frames", shape)]
        keys = [("frames", "next_frames")]
        dummy = {"frames": torch.zeros(shape)}
    else:
        conv = ConvNet(activation_class=nn.ReLU, num_cells=[32, 64, 64], kernel_sizes=[8, 4, 3], strides=[4, 2, 1])
        lstm = LSTMModule(
            input_size=64 * 7 * 7,
            hidden_size=cfg.lstm_hidden,
            in_keys=["embed", "recurrent_state_h", "recurrent_state_c"],
            out_keys=["embed_lstm", ("next", "recurrent_state_h"), ("next", "recurrent_state_c")],
        ).make_python_based()
        mlp = MLP(in_features=cfg.lstm_hidden, out_features=n_actions, num_cells=[], activation_class=nn.ReLU)
        qnet = nn.ModuleDict({"conv": conv, "lstm": lstm, "head": mlp})
        body = [
            Mod(conv, in_keys=[OBS_KEY], out_keys=["embed"]),
            lstm,
            Mod(mlp, in_keys=["embed_lstm"], out_keys=[VALUES]),
        ]
        shape = [1, cfg.lstm_hidden]
        state = [
            StatePair("recurrent_state_h", "next_recurrent_state_h", shape),
            StatePair("recurrent_state_c", "next_recurrent_state_c", shape),
        ]
        keys = [
            ("recurrent_state_h", ("next", "recurrent_state_h")),
            ("recurrent_state_c", ("next", "recurrent_state_c")),
        ]
        dummy = {k: torch.zeros(shape) for k, _ in keys}
    actor = Seq(preprocess(), *body, *head)
    policy = Policy(cfg.kind, actor, qnet, state, keys, cfg.kind == "lstm", cfg.epsilon)
    # ConvNet's layers are lazy: one real-shaped pass materialises them
    # before anything counts, saves or exports parameters.
    GraphPolicy(policy)(torch.zeros(210, 160, 3, dtype=torch.uint8), *[dummy[k] for k, _ in keys])
    return policy


class GraphPolicy(nn.Module):
    """Positional-tensor view of a Policy: (pixels, *states) -> (action, action_value, *next_states)."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.actor = policy.actor
        self.state_keys = policy.state_keys
        self.uses_is_init = policy.uses_is_init

    def forward(self, pixels: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One decision on one raw screen."""
        td = TensorDict({SCREEN_KEY: pixels}, batch_size=[])
        for (in_key, _), value in zip(self.state_keys, states, strict=True):
            td.set(in_key, value)
        if self.uses_is_init:
            # The device resets states to zeros at episode start, which is
            # what is_init=True does inside LSTMModule; verify checks that.
            td.set("is_init", torch.zeros(1, dtype=torch.bool))
        td = self.actor(td)
        return (td.get(ACTION), td.get(VALUES), *[td.get(out_key) for _, out_key in self.state_keys])


def io_names(policy: Policy) -> tuple[list[str], list[str]]:
    """Graph input and output names, in GraphPolicy's positional order."""
    inputs = [SCREEN_KEY, *[p.input for p in policy.state]]
    outputs = [ACTION, VALUES, *[p.output for p in policy.state]]
    return inputs, outputs
