"""The policy on the board: an onnxruntime session plus the manifest's recurrent state.

The session knows nothing of what the states mean: it feeds each state
input, keeps each state output for the next call, and zeroes them all at
episode start, as the manifest's state pairs say.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from device.manifest import SCREEN_SHAPE, BundleError, Manifest, TensorSpec

ORT_TYPES = {
    "tensor(uint8)": "uint8",
    "tensor(float)": "float32",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
}


class PolicyError(Exception):
    """The policy produced something the loop cannot act on."""


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


class PolicySession:
    """Screen in, action index out, with the state pairs carried between calls."""

    def __init__(
        self, bundle: Path, manifest: Manifest, threads: int | None = None, model_file: str | None = None
    ) -> None:
        import onnxruntime as ort

        self.manifest = manifest
        path = Path(bundle) / (model_file or manifest.model_file)
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises several unrelated types for a bad file
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BundleError(f"cannot load {path.name}: {first[:200]}; re-export the bundle") from err
        _check_io("input", manifest.inputs, self.session.get_inputs())
        _check_io("output", manifest.outputs, self.session.get_outputs())
        self.n_actions = len(manifest.action_ids)
        self._outputs = [manifest.action_output, manifest.values_output, *[p.output for p in manifest.state]]
        self._feed: dict[str, np.ndarray] = {}
        self.reset()

    def reset(self) -> None:
        """Zero every state, as at episode start."""
        for pair in self.manifest.state:
            self._feed[pair.input] = np.zeros(pair.shape, dtype=pair.dtype)

    def set_state(self, states: dict[str, np.ndarray]) -> None:
        """Set state inputs explicitly (self-test), checking dtype and shape."""
        for pair in self.manifest.state:
            value = np.asarray(states[pair.input])
            if value.dtype != np.dtype(pair.dtype) or list(value.shape) != list(pair.shape):
                raise PolicyError(
                    f"state {pair.input!r} is {value.dtype}{list(value.shape)}, the manifest "
                    f"says {pair.dtype}{list(pair.shape)}"
                )
            self._feed[pair.input] = value

    def run(self, screen: np.ndarray) -> tuple[int, np.ndarray, list[np.ndarray]]:
        """One decision: (action index, action values, next states); states advance."""
        if screen.shape != SCREEN_SHAPE or screen.dtype != np.uint8:
            raise PolicyError(f"screen is {screen.dtype}{list(screen.shape)}, expected uint8{list(SCREEN_SHAPE)}")
        self._feed[self.manifest.screen_input] = screen
        action, values, *states = self.session.run(self._outputs, self._feed)
        index = int(action)
        if not np.isfinite(values).all():
            raise PolicyError("policy output contains NaN or inf; the model weights are broken, re-export it")
        if not 0 <= index < self.n_actions:
            raise PolicyError(
                f"policy chose action index {index}, outside 0..{self.n_actions - 1}; "
                "the model does not match the manifest's action table"
            )
        for pair, value in zip(self.manifest.state, states, strict=True):
            self._feed[pair.input] = value
        return index, values, states

    def act(self, screen: np.ndarray) -> int:
        """One decision: the action index."""
        return self.run(screen)[0]
