"""One way to step any form of the policy through a frame sequence: eager, pt2, AOTInductor, ONNX.

Each backend is a step function (pixels, states) -> (action, values, next
states) on numpy arrays; `run_sequence` carries the states along the
sequence and resets them at each episode start, as the device does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict

from host.envs import SCREEN_KEY
from host.policies import ACTION, VALUES, Policy

Step = Callable[[np.ndarray, list[np.ndarray], bool], tuple[int, np.ndarray, list[np.ndarray]]]


@dataclass
class Trace:
    """Everything a backend produced along a sequence, and the states it was fed."""

    actions: np.ndarray
    values: np.ndarray
    states_in: list[np.ndarray]
    states_out: list[np.ndarray]


def eager_step(policy: Policy) -> Step:
    """The TorchRL actor itself, on a TensorDict; LSTM resets go through `is_init`, as in training."""

    def step(pixels: np.ndarray, states: list[np.ndarray], episode_start: bool) -> tuple:
        td = TensorDict({SCREEN_KEY: torch.from_numpy(pixels)}, batch_size=[])
        for (in_key, _), value in zip(policy.state_keys, states, strict=True):
            td.set(in_key, torch.from_numpy(value))
        if policy.uses_is_init:
            td.set("is_init", torch.tensor([episode_start]))
        with torch.no_grad():
            td = policy.actor(td)
        nxt = [td.get(out_key).numpy().copy() for _, out_key in policy.state_keys]
        return int(td.get(ACTION)), td.get(VALUES).numpy().copy(), nxt

    return step


def module_step(module: Callable) -> Step:
    """An exported module (ExportedProgram.module() or an AOTInductor runner)."""

    def step(pixels: np.ndarray, states: list[np.ndarray], episode_start: bool) -> tuple:
        with torch.no_grad():
            out = module(torch.from_numpy(pixels), *[torch.from_numpy(s) for s in states])
        action, values, *nxt = [o.detach().numpy().copy() for o in out]
        return int(action), values, nxt

    return step


def onnx_step(path: Path, input_names: list[str], output_names: list[str]) -> Step:
    """onnxruntime on the ONNX file, with the device's session options."""
    import onnxruntime as ort

    from device.policy import session_options

    session = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])

    def step(pixels: np.ndarray, states: list[np.ndarray], episode_start: bool) -> tuple:
        feed = dict(zip(input_names, [pixels, *states], strict=True))
        action, values, *nxt = session.run(output_names, feed)
        return int(action), values, nxt

    return step


def run_sequence(
    step: Step,
    pixels: np.ndarray,
    starts: np.ndarray,
    initial: list[np.ndarray],
    reset_to_zeros: bool = True,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> Trace:
    """Step through the frames, carrying states; zero them at each episode start unless told not to."""
    states = [s.copy() for s in initial]
    actions, values, states_in, states_out = [], [], [[] for _ in initial], [[] for _ in initial]
    indices: Iterable[int] = range(len(pixels))
    for i in progress(indices) if progress else indices:
        if starts[i] and reset_to_zeros:
            states = [np.zeros_like(s) for s in states]
        for k, s in enumerate(states):
            states_in[k].append(s)
        action, vals, states = step(pixels[i], states, bool(starts[i]))
        actions.append(action)
        values.append(vals)
        for k, s in enumerate(states):
            states_out[k].append(s)
    return Trace(
        np.asarray(actions, dtype=np.int64),
        np.stack(values),
        [np.stack(s) for s in states_in],
        [np.stack(s) for s in states_out],
    )
