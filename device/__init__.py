"""The board side of edgerl: runs a bundle's ONNX policy, torch-free; plays it on the ALE when it has a game.

`from device import Policy` is the runtime for your own control loop (see device/policy.py).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Policy"]


def __getattr__(name: str) -> Any:
    # Deferred: the board module imports device.layout with the board's bare python3, which has no numpy.
    if name == "Policy":
        from device.policy import Policy

        return Policy
    raise AttributeError(f"module 'device' has no attribute {name!r}")
