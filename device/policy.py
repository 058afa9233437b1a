"""The policy on the board: `Policy.load(bundle)`, `reset()`, `act(obs)`; any control loop uses this.

    from device import Policy
    policy = Policy.load("bundle")      # checks every file's sha256, loads the ONNX model
    policy.reset()                      # at episode start: states to zeros, is_init on the next step
    action = policy.act(observation)    # an int for a game bundle, the action array otherwise

A continuous action is checked against the bounds the manifest records
from the env's action spec: an out-of-range or non-finite action raises
PolicyError in one line (a motor is never sent it), unless the policy was
loaded with `clip=True`, which clips into range (non-finite still raises).

The session knows nothing of what the states mean: it feeds each state
input, keeps each state output for the next call, and zeroes them all at
episode start, as the manifest's state pairs say. Where the graph has an
episode-start input (TorchRL's `is_init`), it is True on the first call
after `reset()` and False after that.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from device.manifest import ActionSpec, BundleError, EdgerlError, Manifest, TensorSpec
from device.model_choice import model_for
from device.trust import load_trusted

ORT_TYPES = {
    "tensor(uint8)": "uint8",
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
}


class PolicyError(EdgerlError):
    """The policy was fed, or produced, something the loop cannot act on."""


def session_options(threads: int | None) -> object:
    """Session options chosen for a small board: one decision at a time, no thread spinning."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or 1
    opts.inter_op_num_threads = 1
    # Spinning workers burn the core the emulator needs between calls.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def _check_io(kind: str, declared: list[TensorSpec], actual: list) -> None:
    by_name = {t.name: t for t in actual}
    for spec in declared:
        got = by_name.get(spec.name)
        if got is None:
            raise BundleError(
                f"model has no {kind} named {spec.name!r} that the manifest declares; "
                "the model and manifest come from different exports"
            )
        dtype = ORT_TYPES.get(got.type, got.type)
        shape = [d if isinstance(d, int) else -1 for d in got.shape]
        if dtype != spec.dtype or shape != list(spec.shape):
            raise BundleError(
                f"model {kind} {spec.name!r} is {dtype}{shape} but the manifest says "
                f"{spec.dtype}{list(spec.shape)}; re-export the bundle"
            )


class Policy:
    """Observations in, action out, with the manifest's states carried between calls."""

    def __init__(self, bundle: Path, manifest: Manifest, threads: int | None = None,
                 model_file: str | None = None, clip: bool = False) -> None:
        import onnxruntime as ort

        self.manifest, self.clip = manifest, clip
        self.model_file = model_file or manifest.model_file
        path = Path(bundle) / self.model_file
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises several unrelated types for a bad file
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BundleError(f"cannot load {path.name}: {first[:200]}; re-export the bundle") from err
        _check_io("input", manifest.inputs, self.session.get_inputs())
        _check_io("output", manifest.outputs, self.session.get_outputs())
        self._specs = {t.name: t for t in manifest.inputs}
        self._output_names = [t.name for t in manifest.outputs]
        self.n_actions = len(manifest.action_ids)
        self._feed: dict[str, np.ndarray] = {}
        self.reset()

    @classmethod
    def load(cls, bundle: str | Path, threads: int | None = None, int8: str | bool = "auto", clip: bool = False,
             allow_unverified: bool = False) -> Policy:
        """Check the bundle's checksums and verification and load the model `int8` names.

        "auto" runs the one the board's self-test chose (device/model_choice.py; fp32 without a choice), "on" (True)
        the int8 one, "off" (False) fp32.

        With `clip`, a continuous action is clipped into the manifest's bounds instead of refused. A bundle whose
        verification failed is refused unless `allow_unverified` (for debugging it).
        """
        bundle = Path(bundle).resolve()  # once: a `current` link flipped meanwhile cannot mix two releases
        manifest = load_trusted(bundle, allow_unverified)
        return cls(bundle, manifest, threads, model_for(bundle, manifest, int8), clip)

    def reset(self) -> None:
        """Start an episode: every state to zeros, the episode-start flag up for the next call."""
        for pair in self.manifest.state:
            self._feed[pair.input] = np.zeros(pair.shape, dtype=pair.dtype)
        self._episode_start = True

    def set_state(self, states: Mapping[str, np.ndarray]) -> None:
        """Set state inputs explicitly (self-test), checking dtype and shape."""
        for pair in self.manifest.state:
            self._feed[pair.input] = self._checked(pair.input, states[pair.input], "state")

    def _checked(self, name: str, value: object, what: str) -> np.ndarray:
        spec = self._specs[name]
        array = np.asarray(value)
        want = np.dtype(spec.dtype)
        if what == "observation" and array.dtype.kind == want.kind and np.can_cast(array.dtype, want, "safe"):
            # A sensor's float32 where the env declared float64 (TorchRL's DoubleToFloat leaves the raw input
            # float64): widening loses nothing, narrowing or changing kind would, and stays refused.
            array = array.astype(want, copy=False)
        if array.dtype != want or list(array.shape) != list(spec.shape):
            raise PolicyError(f"{what} {name!r} is {array.dtype}{list(array.shape)}, the manifest says "
                              f"{spec.dtype}{list(spec.shape)}")
        return array

    def _observe(self, obs: np.ndarray | Mapping[str, np.ndarray]) -> None:
        names = self.manifest.observations
        if not isinstance(obs, Mapping):
            if len(names) != 1:
                raise PolicyError(f"this policy takes {len(names)} observations; pass a dict with {names}")
            obs = {names[0]: obs}
        missing = [n for n in names if n not in obs]
        if missing:
            raise PolicyError(f"observation {missing[0]!r} is missing; this policy takes {names}")
        for name in names:
            self._feed[name] = self._checked(name, obs[name], "observation")

    def step(self, obs: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One decision: every output of the graph by name; states advance."""
        self._observe(obs)
        start = self.manifest.episode_start_input
        if start is not None:
            self._feed[start] = np.full(self._specs[start].shape, self._episode_start, dtype=bool)
        outputs = dict(zip(self._output_names, self.session.run(self._output_names, self._feed), strict=True))
        for name, value in outputs.items():
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise PolicyError(f"policy output {name!r} contains NaN or inf; the model weights are broken, "
                                  "re-export it")
        for pair in self.manifest.state:
            self._feed[pair.input] = outputs[pair.output]
        self._episode_start = False
        return outputs

    def act(self, obs: np.ndarray | Mapping[str, np.ndarray]) -> int | np.ndarray:
        """One decision: the action index of a game bundle (checked against its table), else the action array."""
        action = self.step(obs)[self.manifest.action_output]
        if self.manifest.env is None:
            return checked_action(action, self.manifest.action, self.clip)
        index = int(action)
        if not 0 <= index < self.n_actions:
            raise PolicyError(
                f"policy chose action index {index}, outside 0..{self.n_actions - 1}; "
                "the model does not match the manifest's action table"
            )
        return index

    def run_inputs(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph once on explicit inputs (self-test); the carried state is not touched."""
        checked = {name: self._checked(name, feed[name], "input") for name in self._specs}
        return dict(zip(self._output_names, self.session.run(self._output_names, checked), strict=True))


def checked_action(action: np.ndarray, spec: ActionSpec | None, clip: bool = False) -> np.ndarray:
    """The action, refused in one line (or clipped) when it is outside what the action spec allows."""
    if spec is None:
        return action
    if spec.kind == "discrete":
        index = int(np.asarray(action).reshape(-1)[0]) if np.asarray(action).size == 1 else -1
        if not 0 <= index < spec.n:
            raise PolicyError(f"policy chose action {action!r}, outside 0..{spec.n - 1}; the model does not match "
                              "its action spec")
        return action
    if not np.isfinite(action).all():
        raise PolicyError("policy produced a NaN or inf action; the model weights are broken, re-export it")
    if spec.low is None:
        return action
    low = np.asarray(spec.low, dtype=action.dtype).reshape(action.shape)
    high = np.asarray(spec.high, dtype=action.dtype).reshape(action.shape)
    if clip:
        return np.clip(action, low, high)
    # A few float32 steps of slack: a squashed (tanh) action can round onto the bound.
    slack = 4 * np.finfo(np.float32).eps * np.maximum(1.0, np.maximum(np.abs(low), np.abs(high)))
    outside = (action < low - slack) | (action > high + slack)
    if outside.any():
        i = int(np.flatnonzero(outside.reshape(-1))[0])
        raise PolicyError(f"policy produced action {float(action.reshape(-1)[i]):.4g} at element {i}, outside "
                          f"[{float(low.reshape(-1)[i]):g}, {float(high.reshape(-1)[i]):g}] of its action spec; "
                          "nothing was sent: fix or re-export the model, or load it with clip=True")
    return action
