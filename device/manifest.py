"""The bundle contract: manifest schema, reading, writing and checking.

This is the one place that knows what a bundle looks like. Host (export,
verify), deploy and device all import it, so the format is written once.
Plain JSON only: the device never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from device.layout import sha256_file

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Version 1 bundles (one screen input, no episode-start flag) are read as version 2."""

# Every name the bundle's parts share lives here, so host, deploy and device cannot drift.
MANIFEST = "manifest.json"
MODEL_FILE = "policy.onnx"
INT8_FILE = "policy.int8.onnx"
GOLDEN_FILE = "golden.npz"
PT2_FILE = "policy.pt2"
AOTI_FILE = "policy.aoti.pt2"
CHECKPOINT_FILE = "checkpoint.pt"
HOST_ONLY_FILES = (CHECKPOINT_FILE, PT2_FILE, AOTI_FILE)
SCREEN_INPUT = "pixels"
SCREEN_SHAPE = (210, 160, 3)
"""The raw ALE screen, uint8 RGB: what a pixel policy's graph takes."""
FRAME_SHAPE = (84, 84)
"""The tutorial's preprocessed frame (grayscale, nearest-neighbour resize)."""
STACK_DEPTH = 4
"""Frames in the stack of edgerl's own stacked policies (the built-in `stacked` and the PQN trainer's)."""
ACTION_OUTPUT = "action"
EPISODE_START_INPUT = "is_init"
"""Optional bool input, True on the first step of an episode (TorchRL's InitTracker key)."""


# The exit codes of both command lines, `edgerl` on the host and `python -m device` on the board.
EXIT_OK = 0
EXIT_FAILED_CHECK = 1
"""A check ran and failed: a bundle's checksums, its self-test, verify's parity, a replay, a deploy step."""
EXIT_BAD_INPUT = 2
"""The command cannot start: a missing file, a malformed manifest, a bad argument, a missing extra."""
EXIT_INT8_REFUSED = 3
"""`edgerl export --int8` or `edgerl quantize`: the int8 model was refused; the fp32 bundle is unchanged."""
EXIT_LOOP_FAILED = 4
"""`python -m device serve`: the control loop stopped on a fault (the I/O class raised or blocked, the
policy's output was unusable); the I/O class's close() ran first."""
EXIT_UNTRUSTED = 5
"""The board has a trust policy and the release is unsigned, signed by a key it does not allow, or changed
after signing (or the policy itself is unreadable): nothing of it ran."""
EXIT_ROLLOUT_STOPPED = 6
"""`edgerl deploy --waves`: more boards failed than --max-fail allows (or the canary refused); later boards
were not touched."""
EXIT_INTERRUPTED = 130
EXIT_CODES_HELP = ("exit codes: 0 ok; 1 a check failed (checksums, self-test, parity, replay, a deploy step, "
                   "a health gate); 2 bad input (missing file, malformed manifest, bad argument); 3 int8 refused, "
                   "fp32 bundle written; 4 the serve loop stopped on a fault; 5 refused by the board's trust "
                   "policy (unsigned, untrusted key, changed after signing); 6 a rollout stopped on failures; "
                   "130 interrupted")


class EdgerlError(Exception):
    """Base of every error edgerl reports as one line; `exit_code` is what the CLI exits with."""

    exit_code = EXIT_BAD_INPUT


class BundleError(EdgerlError):
    """A bundle is missing, malformed or does not match what the code expects."""


class IntegrityError(BundleError):
    """A bundle's file does not match its recorded sha256: a failed check, not bad input."""

    exit_code = EXIT_FAILED_CHECK


@dataclass(frozen=True)
class EnvSpec:
    """The Atari environment the policy was trained on; the device reproduces it."""

    game: str = "pong"
    frame_skip: int = 4
    """Emulator frames per agent step; the action is repeated on each."""
    max_pool: bool = False
    """Observation is the pixel-wise max of the last two frames of a step."""
    repeat_action_probability: float = 0.25
    """ALE sticky actions (v5 default 0.25)."""
    noop_max: int = 0
    """Up to this many NOOP steps after reset, drawn from the episode seed."""
    full_action_space: bool = False
    terminal_on_life_loss: bool = False
    max_num_frames_per_episode: int = 108_000
    """ALE truncation, in emulator frames (v5 default)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvSpec:
        """Build from JSON, refusing unknown keys (a newer format)."""
        return cls(**_known(cls, data, "env"))


@dataclass(frozen=True)
class TensorSpec:
    """One named model input or output."""

    name: str
    shape: list[int]
    dtype: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        """Build from JSON."""
        return cls(**_known(cls, data, "tensor"))


@dataclass(frozen=True)
class StatePair:
    """A recurrent state: fed as `input`, returned as `output`, reset at episode start."""

    input: str
    output: str
    shape: list[int]
    dtype: str = "float32"
    reset: str = "zeros"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StatePair:
        """Build from JSON."""
        return cls(**_known(cls, data, "state"))


@dataclass(frozen=True)
class ActionSpec:
    """What the action is, from the env's (or the actor's) action spec: what the board may send on."""

    kind: str
    """"discrete" (an index below `n`) or "continuous" (a float vector)."""
    n: int | None = None
    low: list[float] | None = None
    """Per element of the action, flattened; None when the spec is unbounded."""
    high: list[float] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActionSpec:
        """Build from JSON."""
        return cls(**_known(cls, data, "action"))

    def check(self, size: int) -> None:
        """Refuse a spec that cannot describe an action of `size` elements."""
        if self.kind == "discrete":
            if not isinstance(self.n, int) or self.n < 1:
                raise BundleError(f"a discrete action needs a positive count n, not {self.n!r}; re-export")
            return
        if self.kind != "continuous":
            raise BundleError(f"action kind must be 'discrete' or 'continuous', not {self.kind!r}; re-export")
        if (self.low is None) != (self.high is None):
            raise BundleError("a continuous action needs both low and high bounds, or neither; re-export")
        if self.low is not None and not (len(self.low) == len(self.high) == size
                                         and all(lo <= hi for lo, hi in zip(self.low, self.high, strict=True))):
            raise BundleError(f"the action bounds do not fit the {size}-element action (or low > high); re-export")


@dataclass(frozen=True)
class Exploration:
    """How the graph picks its action: argmax, or an e-greedy draw inside the graph."""

    mode: str = "deterministic"
    epsilon: float = 0.0
    """E-greedy rate of a `random` bundle whose policy ends in an EGreedyModule (0 otherwise)."""


@dataclass
class Manifest:
    """Everything the device needs to know about a bundle, and nothing of how it was trained."""

    policy_kind: str
    """A label for people: a built-in's name or the user's factory."""
    env: EnvSpec | None
    """The Atari game the device plays; None for a policy fed by the user's own sensors."""
    action_ids: list[int]
    """ALE action id for each policy output index (the env's action set); empty without a game."""
    action_meanings: list[str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    state: list[StatePair]
    exploration: Exploration
    observations: list[str] = field(default_factory=lambda: [SCREEN_INPUT])
    """Inputs fed from observations, in graph order (a game bundle has exactly the raw screen)."""
    episode_start_input: str | None = None
    """Bool input set True on an episode's first step, False after (None: the graph has none)."""
    action_output: str = ACTION_OUTPUT
    action: ActionSpec | None = None
    """The action's kind and bounds (None in bundles made before edgerl recorded them)."""
    values_output: str | None = "action_value"
    """Action values or logits beside the action, when the policy writes them."""
    sampled_from: list[str] = field(default_factory=list)
    """Outputs holding the distribution a stochastic continuous action is drawn from (loc, scale): what verify
    compares in place of the draw."""
    model_file: str = MODEL_FILE
    golden_file: str = GOLDEN_FILE
    golden_atol: float = 1e-4
    files: dict[str, str] = field(default_factory=dict)
    backends: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def bundle_id(self) -> str:
        """Content identity: changes when any shipped file changes, not when figures are added."""
        digest = hashlib.sha256(json.dumps(self.files, sort_keys=True).encode()).hexdigest()
        return f"{self.policy_kind}-{digest[:12]}"

    @property
    def screen_input(self) -> str:
        """The raw-screen input of a game bundle."""
        return self.observations[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the derived bundle id for humans and tools."""
        data = asdict(self)
        data["bundle_id"] = self.bundle_id
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Parse and check a manifest's JSON; raise BundleError naming the problem."""
        version = data.get("format_version")
        if version not in READABLE_VERSIONS:
            raise BundleError(
                f"manifest format version {version!r} is not supported (this edgerl reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}); re-export the bundle with this edgerl or upgrade edgerl"
            )
        body = dict(data)
        body.pop("bundle_id", None)
        if version == 1:
            body["observations"] = [body.pop("screen_input", SCREEN_INPUT)]
        try:
            body["env"] = None if body["env"] is None else EnvSpec.from_dict(body["env"])
            body["inputs"] = [TensorSpec.from_dict(t) for t in body["inputs"]]
            body["outputs"] = [TensorSpec.from_dict(t) for t in body["outputs"]]
            body["state"] = [StatePair.from_dict(s) for s in body["state"]]
            body["exploration"] = Exploration(**body["exploration"])
            if body.get("action") is not None:
                body["action"] = ActionSpec.from_dict(body["action"])
            manifest = cls(**_known(cls, body, "manifest"))
            if not isinstance(manifest.files, dict) or not isinstance(manifest.observations, list):
                raise TypeError("files must be an object and observations a list")
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise BundleError(f"manifest is malformed ({err}); re-export the bundle") from err
        manifest.check_consistent()
        return manifest

    def check_consistent(self) -> None:
        """Cross-field checks: the I/O names the device relies on exist and agree."""
        inputs = {t.name: t for t in self.inputs}
        outputs = {t.name: t for t in self.outputs}
        for name in self.observations:
            if name not in inputs:
                raise BundleError(f"manifest names observation input {name!r} but the model has none")
        if self.action_output not in outputs:
            raise BundleError(f"manifest names action output {self.action_output!r} but the model has none")
        if self.values_output is not None and self.values_output not in outputs:
            raise BundleError(f"manifest names values output {self.values_output!r} but the model has none")
        for name in self.sampled_from:
            if name not in outputs:
                raise BundleError(f"manifest names distribution output {name!r} but the model has none")
        if self.episode_start_input is not None and self.episode_start_input not in inputs:
            raise BundleError(f"manifest names episode-start input {self.episode_start_input!r} but the model has none")
        for pair in self.state:
            if pair.input not in inputs or pair.output not in outputs:
                raise BundleError(f"state pair {pair.input}->{pair.output} is not among the model's I/O")
        if self.action is not None:
            self.action.check(math.prod(outputs[self.action_output].shape))
        if len(self.action_ids) != len(self.action_meanings):
            raise BundleError("manifest action table's ids and meanings differ in length")
        if self.env is None:
            return
        if not self.action_ids:
            raise BundleError("manifest of a game bundle has an empty action table; re-export the bundle")
        screen = inputs[self.observations[0]]
        if len(self.observations) != 1 or screen.dtype != "uint8" or list(screen.shape) != list(SCREEN_SHAPE):
            raise BundleError(f"a game bundle takes exactly one uint8{list(SCREEN_SHAPE)} screen; this one takes "
                              f"{[(n, inputs[n].dtype, inputs[n].shape) for n in self.observations]}")
        action = outputs[self.action_output]
        if action.shape != [] or not action.dtype.startswith("int"):
            raise BundleError(f"a game bundle's action must be an integer index, not {action.dtype}{action.shape}")
        if not isinstance(self.env.frame_skip, int) or self.env.frame_skip < 1:
            raise BundleError(f"frame_skip must be a positive integer, not {self.env.frame_skip!r}; re-export")


def _known(cls: type, data: dict[str, Any], what: str) -> dict[str, Any]:
    names = set(cls.__dataclass_fields__)
    unknown = set(data) - names
    if unknown:
        raise BundleError(
            f"{what} section has unknown fields {sorted(unknown)}: the bundle was made by a newer edgerl"
        )
    return dict(data)


def creation_mode(folder: bool = False) -> int:
    """The mode open() or mkdir() would give under this process's umask.

    mkstemp and mkdtemp make 0600 files and 0700 folders; what is written through them by a rename (a bundle, its
    manifest and sums, a checkpoint) must end up as any file the user makes, readable by a web server or a service's
    user. The umask is read from /proc (setting it to read it would race with other threads' files).
    """
    try:
        with open("/proc/self/status") as fh:
            umask = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = 0o022
    return (0o777 if folder else 0o666) & ~umask


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that a reader sees either the old file or the whole new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, creation_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(bundle: Path, manifest: Manifest) -> None:
    """Write manifest.json atomically."""
    write_json_atomic(Path(bundle) / MANIFEST, manifest.to_dict())


def read_manifest(bundle: Path) -> Manifest:
    """Read and parse a bundle's manifest without checking file hashes."""
    bundle = Path(bundle)
    if bundle.exists() and not bundle.is_dir():
        hint = f"pass its folder, {bundle.parent}" if bundle.name == MANIFEST else \
            "pass the folder `edgerl export` wrote"
        raise BundleError(f"{bundle} is a file, not a bundle folder; {hint}")
    if not bundle.is_dir():
        raise BundleError(f"bundle folder {bundle} does not exist; pass the folder `edgerl export` wrote")
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle} has no {MANIFEST}: it is not an edgerl bundle")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BundleError(f"{path} is not readable JSON ({err}); re-export the bundle") from err
    if not isinstance(data, dict):
        raise BundleError(f"{path} is not a JSON object; re-export the bundle")
    return Manifest.from_dict(data)


def check_files(bundle: Path, manifest: Manifest) -> None:
    """Raise BundleError unless every listed file exists with its recorded sha256."""
    bundle = Path(bundle)
    for name, expected in manifest.files.items():
        path = bundle / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"manifest lists an unsafe path {name!r}; refusing the bundle")
        if not path.is_file():
            raise IntegrityError(f"{name} is missing from {bundle}; copy the whole bundle folder again")
        if sha256_file(path) != expected:
            raise IntegrityError(
                f"{name} in {bundle} does not match its sha256 in the manifest (tampered or "
                "damaged in transfer); copy the bundle again or re-export it"
            )
    for required in (manifest.model_file, manifest.golden_file):
        if required not in manifest.files:
            raise BundleError(f"manifest does not list {required} with a checksum; re-export the bundle")


def load_bundle(bundle: Path) -> Manifest:
    """Read the manifest and check every file's sha256: the entry point for any user of a bundle."""
    manifest = read_manifest(bundle)
    check_files(bundle, manifest)
    return manifest


def record_files(bundle: Path, names: list[str]) -> dict[str, str]:
    """sha256 of each named file in the bundle, for the manifest."""
    return {name: sha256_file(Path(bundle) / name) for name in sorted(names)}
