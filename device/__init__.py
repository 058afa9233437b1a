"""The board side of edgerl: runs a bundle's ONNX policy, torch-free; plays it on the ALE when it has a game.

`from device import Policy` is the runtime for your own control loop (see device/policy.py).
"""

from device.policy import Policy

__all__ = ["Policy"]
