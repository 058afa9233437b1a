"""ONNX from a graph torch.export has already captured, with torch.onnx's table of ONNX functions built once.

`torch.onnx.export` builds its registry of ONNX functions anew on every call: onnxscript parses the source of
~500 ATen implementations each time, about 1.2 s of an export whose own work is 0.3-1 s. One edgerl process
exports several graphs (the policy, a Resize's rounding probe; the tests export hundreds), so the first
registry is kept for later calls. It is only read by an export that brings no `custom_translation_table`
(edgerl brings none), and it is kept only inside these calls, so a user's own `torch.onnx.export` in the same
process, which may add to its registry, builds its own as before. Should torch rename what this reaches into,
exports still work, at the old cost.

Given the `ExportedProgram` the pt2 file was saved from, the ONNX exporter does not trace the policy again.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch


def onnx_program(model: torch.nn.Module | torch.export.ExportedProgram, args: tuple, **options: Any) -> Any:
    """`torch.onnx.export(model, args, dynamo=True, **options)`, with the function registry of earlier calls."""
    with _registry_kept():
        return torch.onnx.export(model, args, dynamo=True, **options)


@functools.cache
def _registry(build: Any, *args: Any, **kwargs: Any) -> Any:
    return build(*args, **kwargs)


@contextlib.contextmanager
def _registry_kept() -> Iterator[None]:
    try:
        from torch.onnx._internal.exporter._registration import ONNXRegistry

        original = ONNXRegistry.__dict__["from_torchlib"]
        build = ONNXRegistry.from_torchlib
    except (ImportError, KeyError):
        yield
        return
    ONNXRegistry.from_torchlib = classmethod(lambda cls, *args, **kwargs: _registry(build, *args, **kwargs))
    try:
        yield
    finally:
        ONNXRegistry.from_torchlib = original
