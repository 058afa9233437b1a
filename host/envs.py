"""The TorchRL Atari environment training uses, built from an EnvSpec.

The same `preprocess()` transforms feed the training env and are prepended
to the exported policy, so the preprocessing is written once.
"""

from __future__ import annotations

from torchrl.envs import Compose, GrayScale, GymEnv, Resize, ToTensorImage, TransformedEnv

from device.manifest import EnvSpec

SCREEN_KEY = "pixels"
OBS_KEY = "pixels_trsf"


class UnsupportedEnvError(ValueError):
    """The EnvSpec asks for a semantic the host env cannot reproduce."""


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
    base = env.base_env if isinstance(env, TransformedEnv) else env
    ale_env = base._env.unwrapped
    ids = [int(a.value) if hasattr(a, "value") else int(a) for a in ale_env._action_set]
    return ids, list(ale_env.get_action_meanings())
