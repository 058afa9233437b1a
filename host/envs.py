"""The TorchRL Atari environment training uses, built from an EnvSpec.

The same `preprocess()` transforms feed the training env and are prepended
to the exported policy, so the preprocessing is written once.
"""

from __future__ import annotations

import torch
from torchrl.envs import (
    CatFrames,
    Compose,
    EnvBase,
    GrayScale,
    GymEnv,
    Resize,
    SerialEnv,
    TensorDictPrimer,
    ToTensorImage,
    Transform,
    TransformedEnv,
    VecNormV2,
)
from torchrl.envs.batched_envs import BatchedEnvBase

from device.manifest import SCREEN_INPUT, EdgerlError, EnvSpec

SCREEN_KEY = SCREEN_INPUT
OBS_KEY = "pixels_trsf"
# gymnasium wrappers that do not change what the game does.
_NEUTRAL_WRAPPERS = {"OrderEnforcing", "PassiveEnvChecker", "EnvCompatibility"}


class UnsupportedEnvError(EdgerlError, ValueError):
    """The env asks for a semantic the host env or the board cannot reproduce."""


def gym_id(spec: EnvSpec) -> str:
    """The gymnasium id of the game, v5 semantics."""
    return f"ALE/{spec.game.capitalize()}-v5"


def preprocess() -> Compose:
    """The tutorial's observation transforms: uint8 HWC screen -> float [1, 84, 84] in [0, 1]."""
    return Compose(
        ToTensorImage(in_keys=[SCREEN_KEY], out_keys=[OBS_KEY]),
        Resize(84, 84, interpolation="nearest", in_keys=[OBS_KEY]),
        GrayScale(in_keys=[OBS_KEY]),
    )


def make_base_env(spec: EnvSpec) -> GymEnv:
    """The raw TorchRL GymEnv with exactly the spec's ALE semantics."""
    unsupported = [
        name
        for name, value in (
            ("max_pool", spec.max_pool),
            ("noop_max", spec.noop_max),
            ("terminal_on_life_loss", spec.terminal_on_life_loss),
        )
        if value
    ]
    if unsupported:
        raise UnsupportedEnvError(
            f"the host env does not implement {', '.join(unsupported)}; use the ALE v5 semantics "
            "(frame skip + sticky actions) that host and device both reproduce"
        )
    # TorchRL passes `frameskip` to ale-py itself, so ALE repeats the action
    # natively; without an explicit frame_skip it would pass 1, silently
    # overriding v5's default of 4.
    return GymEnv(
        gym_id(spec),
        frame_skip=spec.frame_skip,
        categorical_action_encoding=True,
        repeat_action_probability=spec.repeat_action_probability,
        full_action_space=spec.full_action_space,
        max_num_frames_per_episode=spec.max_num_frames_per_episode,
    )


def make_env(spec: EnvSpec) -> TransformedEnv:
    """Training/eval env: raw screen kept under `pixels`, preprocessed under `pixels_trsf`."""
    return TransformedEnv(make_base_env(spec), preprocess())


def action_table(env: GymEnv | TransformedEnv) -> tuple[list[int], list[str]]:
    """ALE action ids and meanings of the env's action indices (minimal or full set)."""
    ale_env = ale_of(env)
    ids = [_action_id(a) for a in ale_env._action_set]
    return ids, list(ale_env.get_action_meanings())


def single_env(env: EnvBase | None, close: bool = False) -> EnvBase | None:
    """The one env a batched env (SerialEnv, ParallelEnv, or a TransformedEnv over either) runs copies of.

    What a user trains in is batched; what the board runs is one copy. The copy is made by the batched env's own
    constructor and kwargs (for the first worker), and the transforms over the batch are cloned onto it, their
    statistics (VecNorm's) with them and their per-batch buffers (CatFrames') emptied, so they fill at the copy's
    shape. With `close`, the batched env's workers are shut down (ours to close: the CLI built them).
    """
    batched = base_env(env) if env is not None else None
    if not isinstance(batched, BatchedEnvBase):
        return env
    one = batched.create_env_fn[0](**(batched.create_env_kwargs[0] or {}))
    if not batched.is_closed:
        _take_statistics(_first_worker_state(batched), one)
    if isinstance(env, TransformedEnv):
        transforms = env.transform.clone()
        for t in transforms.transforms if isinstance(transforms, Compose) else [transforms]:
            _unbatch(t, batched.batch_size)
        one = TransformedEnv(one, transforms)
    if close and not batched.is_closed:
        batched.close()
    return one


def is_vecnorm(t: Transform) -> bool:
    """VecNorm (v1) or VecNormV2."""
    return type(t).__name__ in ("VecNorm", "VecNormV2")


def empty_stack_buffers(t: CatFrames) -> None:
    """Give a CatFrames fresh lazy stack buffers, to fill at the shape of the next env it steps in.

    TorchRL's clone() shares them with the original, so a clone stepped in another env breaks the original's.
    """
    for key in t.in_keys:
        setattr(t, f"_cat_buffers_{key}", torch.nn.parameter.UninitializedBuffer())


def _unbatch(t: Transform, batch: torch.Size) -> None:
    """A transform cloned from over a batch, made fit for one copy: what it holds per batch element is the first's.

    CatFrames' stack buffers are emptied (they refill at the copy's shape); a primer's specs and VecNormV2's
    per-element statistics (`reduce_batch_dims=False`, its default) are indexed at the first element, the copy
    the board runs.
    """
    first = (0,) * len(batch)
    if isinstance(t, CatFrames):
        empty_stack_buffers(t)
    elif isinstance(t, TensorDictPrimer) and first and tuple(t.primers.shape[:len(batch)]) == tuple(batch):
        t.primers = t.primers[first]
    elif isinstance(t, VecNormV2) and first and getattr(t, "_loc", None) is not None \
            and tuple(t._loc.batch_size[:len(batch)]) == tuple(batch):
        t._loc, t._var = t._loc[first], t._var[first]


def _first_worker_state(batched: BatchedEnvBase) -> dict:
    """The state of a started batched env's first worker's transforms.

    Read in this process for a SerialEnv, asked of the worker process for a ParallelEnv (its VecNormV2
    statistics live only there).
    """
    if isinstance(batched, SerialEnv):
        worker = batched._envs[0]
        return worker.transform.state_dict() if isinstance(worker, TransformedEnv) else {}
    return batched.state_dict().get("worker0", {})


def _take_statistics(state: dict, one: EnvBase) -> None:
    """The statistics the first worker gathered (its VecNorms'), copied onto the fresh copy.

    The copy is built by the same factory, so its transforms carry the worker's module names.
    """
    if not (state and isinstance(one, TransformedEnv)):
        return
    for name, dst in one.transform.named_modules():
        theirs = {key[len(name) + 1:]: value for key, value in state.items() if key.startswith(f"{name}.")}
        if is_vecnorm(dst) and theirs:
            dst.load_state_dict(theirs)


def base_env(env: EnvBase) -> EnvBase:
    """The env under its transforms."""
    return env.base_env if isinstance(env, TransformedEnv) else env


def ale_of(env: EnvBase) -> object | None:
    """ale-py's AtariEnv under a TorchRL env, or None when the env is not an ALE game."""
    try:
        from ale_py.env import AtariEnv
    except ImportError:  # pragma: no cover - ale-py is a core dependency
        return None
    base = base_env(env)
    if isinstance(base, BatchedEnvBase):  # its attributes are its workers' (an unstarted one recurses): unbatch first
        return None
    gym_env = getattr(base, "_env", None)
    unwrapped = getattr(gym_env, "unwrapped", None)
    return unwrapped if isinstance(unwrapped, AtariEnv) else None


def env_spec_from(env: EnvBase) -> EnvSpec | None:
    """Read the game and its semantics from the env itself; refuse what the board cannot reproduce.

    None means the env is not an ALE game: the bundle then carries no game
    and the board runs it through `device.Policy` in the user's own loop.
    """
    ale_env = ale_of(env)
    if ale_env is None:
        return None
    base = base_env(env)
    wrapper, wrappers = base._env, []
    while wrapper is not ale_env:
        wrappers.append(type(wrapper).__name__)
        wrapper = wrapper.env
    odd = [w for w in wrappers if w not in _NEUTRAL_WRAPPERS]
    if odd:
        raise UnsupportedEnvError(f"the game is wrapped in {', '.join(odd)}, which the board cannot reproduce; "
                                  "make the env with GymEnv('ALE/<Game>-v5', ...) and TorchRL transforms")
    if ale_env._obs_type != "rgb":
        raise UnsupportedEnvError(f"the game's obs_type is {ale_env._obs_type!r}; the board feeds the RGB screen "
                                  "(obs_type='rgb'), so train on that and preprocess with transforms")
    if not isinstance(ale_env._frameskip, int):
        raise UnsupportedEnvError("a random frame skip (a tuple) cannot be reproduced on the board; use an int")
    if getattr(ale_env, "continuous", False):
        raise UnsupportedEnvError("continuous ALE actions are not supported on the board; use discrete actions")
    if ale_env._game_mode is not None or ale_env._game_difficulty is not None:
        raise UnsupportedEnvError("game modes and difficulties are not reproduced on the board; use the defaults")
    ale = ale_env.ale
    minimal = [_action_id(a) for a in ale.getMinimalActionSet()]
    ids = [_action_id(a) for a in ale_env._action_set]
    return EnvSpec(
        game=ale_env._game,
        frame_skip=int(ale_env._frameskip) * int(getattr(base, "wrapper_frame_skip", 1)),
        repeat_action_probability=round(float(ale.getFloat("repeat_action_probability")), 6),
        full_action_space=ids != minimal,
        max_num_frames_per_episode=int(ale.getInt("max_num_frames_per_episode")),
    )


def _action_id(action: object) -> int:
    return int(action.value) if hasattr(action, "value") else int(action)
