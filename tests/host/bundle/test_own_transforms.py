"""A user's own transform: a pure one goes into the graph and verifies; one that TorchRL does not apply at reset,
or one that keeps state between calls, fails verify with its name and the likely cause in the one line."""

from __future__ import annotations

import pytest
import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs import Compose, GymEnv, StepCounter, Transform, TransformedEnv

from host.bundle.export import ExportOptions
from host.bundle.pipeline import export_policy
from host.errors import VerifyError


class Shift(Transform):
    """Pure, and applied at reset too: what a custom transform must be (docs/policies.md)."""

    def _apply_transform(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - 0.5) * 3

    def _reset(self, tensordict, tensordict_reset):
        return self._call(tensordict_reset)


class Scale(Transform):
    """No `_reset`: TorchRL leaves every reset observation unscaled, while the graph scales it."""

    def _apply_transform(self, obs: torch.Tensor) -> torch.Tensor:
        return obs * 2.0


class CallCounter(Shift):
    """Applied everywhere, but it counts its calls: a different function at each step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def _apply_transform(self, obs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return obs + 0.01 * self.calls


def export(transform: Transform, tmp_path) -> None:
    torch.manual_seed(0)
    env = TransformedEnv(GymEnv("Pendulum-v1"), Compose(transform, StepCounter()))
    net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1), nn.Tanh())
    actor = TensorDictModule(net, in_keys=["observation"], out_keys=["action"])
    # 250 steps: Pendulum's episodes are 200 long, so the rollout crosses a second episode start.
    export_policy(actor, env, tmp_path / "bundle", options=ExportOptions(aoti=False, verify_steps=250),
                  say=lambda _: None)


def test_a_pure_custom_transform_goes_into_the_graph_and_verifies(tmp_path):
    export(Shift(in_keys=["observation"], out_keys=["observation"]), tmp_path)
    assert (tmp_path / "bundle" / "manifest.json").is_file()


@pytest.mark.parametrize(("transform", "named"), [
    (Scale, "Scale is not applied to reset observations (TorchRL calls only `_reset` there): define `_reset`"),
    (CallCounter, "CallCounter changes between identical inputs (calls changed while the env ran): it keeps state"),
])
def test_a_custom_transform_that_breaks_parity_is_named_with_its_cause(transform, named, tmp_path):
    with pytest.raises(VerifyError) as err:
        export(transform(in_keys=["observation"], out_keys=["observation"]), tmp_path)
    line = str(err.value)
    assert "\n" not in line and named in line, line
    assert "disagree with the eager policy" in line and ("episode start" in line or "mid-episode" in line), line
