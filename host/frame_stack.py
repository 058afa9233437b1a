"""The one frame stack: TorchRL's `CatFrames` as explicit state, used by the exported graph and by training alike."""

from __future__ import annotations

import torch
from torch import nn


class StackFrames(nn.Module):
    """The previous stack (padded where `is_init`) without its oldest frame, plus the new frame.

    Inside a TorchRL env, CatFrames keeps a buffer that it fills at reset
    with the first frame ("same") or a constant; here the buffer is an input
    and the padding happens where `is_init` says an episode starts. One
    stack with a one-element `is_init` is what the graph carries; a batch of
    stacks [N, ...] with `is_init` [N] is what the trainer's games carry.
    """

    def __init__(self, n: int, dim: int = -3, padding: str = "constant", padding_value: float = 0.0) -> None:
        super().__init__()
        self.n, self.dim, self.padding, self.padding_value = n, dim, padding, padding_value

    def forward(self, stack: torch.Tensor, frame: torch.Tensor, is_init: torch.Tensor) -> torch.Tensor:
        """The next stack."""
        if self.padding == "same":
            pad = torch.cat([frame] * self.n, dim=self.dim)
        else:
            pad = torch.full_like(stack, self.padding_value)
        if is_init.numel() == 1:
            reset = is_init.reshape(-1)[0]
        else:  # one flag per stack of the batch
            reset = is_init.reshape(-1, *[1] * (stack.dim() - 1))
        stack = torch.where(reset, pad, stack)
        width = frame.shape[self.dim]
        return torch.cat([stack.narrow(self.dim, width, stack.shape[self.dim] - width), frame], dim=self.dim)
