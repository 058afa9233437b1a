"""A robot-style policy reading two observations at once: a camera image and a joint-angle vector.

The env is the user's own TorchRL `EnvBase` (a toy two-joint arm whose
camera sees a target), with the camera preprocessed by TorchRL transforms
and the joints normalised by `ObservationNorm`. The graph takes both raw
observations; on the board the user's loop passes them by name:

    from device import Policy
    policy = Policy.load("bundle")
    action = policy.act({"camera": frame_uint8_32x32x3, "joints": angles_float32_4})

    edgerl export --from examples/two_sensors.py:make --out bundle/
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import Compose, EnvBase, GrayScale, ObservationNorm, Resize, ToTensorImage, TransformedEnv


class ToyArm(EnvBase):
    """Two joints driven by torques in [-1, 1]; a 32x32 camera shows a target that moves with them."""

    def __init__(self) -> None:
        super().__init__(batch_size=torch.Size([]))
        self.observation_spec = Composite(
            camera=Bounded(0, 255, shape=(32, 32, 3), dtype=torch.uint8),
            joints=Unbounded(shape=(4,), dtype=torch.float32))
        self.action_spec = Bounded(-1.0, 1.0, shape=(2,))
        self.reward_spec = Unbounded(shape=(1,))
        self._angles = torch.zeros(4)
        self._gen = torch.Generator().manual_seed(0)

    def _observe(self) -> dict[str, torch.Tensor]:
        camera = torch.zeros(32, 32, 3, dtype=torch.uint8)
        row, col = (16 + 12 * self._angles[:2].sin()).long().clamp(0, 31)
        camera[row, :, 0] = 255
        camera[:, col, 1] = 200
        camera[..., 2] = torch.randint(0, 40, (32, 32), generator=self._gen, dtype=torch.uint8)
        return {"camera": camera, "joints": self._angles.clone()}

    def _reset(self, tensordict: TensorDictBase | None) -> TensorDictBase:
        self._angles = torch.rand(4, generator=self._gen) * 6 - 3
        return TensorDict(self._observe(), batch_size=[])

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        torque = tensordict["action"]
        self._angles[:2] += 0.1 * torque
        self._angles[2:] = 0.9 * self._angles[2:] + 0.1 * torque
        reward = -self._angles[:2].abs().sum().reshape(1)
        return TensorDict({**self._observe(), "reward": reward, "done": torch.zeros(1, dtype=torch.bool),
                           "terminated": torch.zeros(1, dtype=torch.bool)}, batch_size=[])

    def _set_seed(self, seed: int | None) -> None:
        self._gen.manual_seed(int(seed or 0))


class ArmNet(nn.Module):
    """A small CNN on the camera, an MLP on the joints, torques from both."""

    def __init__(self) -> None:
        super().__init__()
        self.eye = nn.Sequential(nn.Conv2d(1, 8, 4, stride=2), nn.ReLU(), nn.Flatten(-3), nn.Linear(8 * 7 * 7, 32))
        self.body = nn.Sequential(nn.Linear(4, 32), nn.Tanh())
        self.head = nn.Sequential(nn.Linear(64, 2), nn.Tanh())

    def forward(self, image: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        """Torques in [-1, 1]."""
        return self.head(torch.cat([self.eye(image), self.body(joints)], -1))


def make() -> tuple[TensorDictModule, TransformedEnv]:
    """The factory `edgerl export --from` calls: (policy, env)."""
    torch.manual_seed(4)
    norm = ObservationNorm(in_keys=["joints"], out_keys=["joints_n"], standard_normal=True)
    env = TransformedEnv(ToyArm(), Compose(
        ToTensorImage(in_keys=["camera"], out_keys=["image"]),
        Resize(16, 16, in_keys=["image"]),
        GrayScale(in_keys=["image"]),
        norm,
    ))
    norm.init_stats(num_iter=200, reduce_dim=0, cat_dim=0)
    return TensorDictModule(ArmNet(), in_keys=["image", "joints_n"], out_keys=["action"]), env
