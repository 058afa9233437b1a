"""The Atari envs of TorchRL's reference scripts, as their `utils_atari.py` files build them.

Written from pytorch/rl sota-implementations/dqn/utils_atari.py (make_env) and ppo/utils_atari.py
(make_base_env, make_parallel_env). The one change: Pong, through its v5 id with frame skip 4 and no sticky
actions, which is what the scripts' `PongNoFrameskip-v4` with `frame_skip=4` plays.
"""

from __future__ import annotations

from torchrl.envs import (
    CatFrames,
    DoubleToFloat,
    EndOfLifeTransform,
    EnvCreator,
    GrayScale,
    GymEnv,
    NoopResetEnv,
    ParallelEnv,
    RenameTransform,
    Resize,
    RewardSum,
    SignTransform,
    StepCounter,
    ToTensorImage,
    TransformedEnv,
    VecNorm,
)

GAME = "ALE/Pong-v5"


def _game() -> GymEnv:
    return GymEnv(GAME, frame_skip=4, repeat_action_probability=0.0, categorical_action_encoding=True)


def dqn_env() -> TransformedEnv:
    """dqn/utils_atari.py make_env (training): every transform, in its order."""
    env = TransformedEnv(_game())
    for t in (NoopResetEnv(noops=30, random=True), EndOfLifeTransform(), SignTransform(in_keys=["reward"]),
              ToTensorImage(), GrayScale(), Resize(84, 84), CatFrames(N=4, dim=-3), RewardSum(),
              StepCounter(max_steps=4500), DoubleToFloat(), VecNorm(in_keys=["pixels"])):
        env.append_transform(t)
    return env


def ppo_base_env() -> TransformedEnv:
    """ppo/utils_atari.py make_base_env (training): the game with no-op starts and life-loss marks."""
    env = TransformedEnv(_game())
    env.append_transform(NoopResetEnv(noops=30, random=True))
    env.append_transform(EndOfLifeTransform())
    return env


def ppo_env(num_envs: int = 1) -> TransformedEnv:
    """ppo/utils_atari.py make_parallel_env: a ParallelEnv (a SerialEnv for one), then the pixel transforms."""
    env = TransformedEnv(ParallelEnv(num_envs, EnvCreator(ppo_base_env), serial_for_single=True))
    for t in (RenameTransform(in_keys=["pixels"], out_keys=["pixels_int"]),
              ToTensorImage(in_keys=["pixels_int"], out_keys=["pixels"]), GrayScale(), Resize(84, 84),
              CatFrames(N=4, dim=-3), RewardSum(), StepCounter(max_steps=4500), SignTransform(in_keys=["reward"]),
              DoubleToFloat(), VecNorm(in_keys=["pixels"])):
        env.append_transform(t)
    return env
