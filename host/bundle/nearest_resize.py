"""A nearest-neighbour `Resize` that picks the same pixels in every backend.

ONNX's Resize computes a nearest source index as `floor(i / (out / in))`;
torch computes `floor(i * (in / out))`. In float32 the two disagree at
many sizes (210x160 -> 64x64 among them; 258 of 1,512 size pairs tried,
though not at Pong's 84x84): a column or row one pixel off, which verify
then finds as a few percent of actions changed. Picking is all a nearest
resize does, so where onnxruntime would pick differently the graph picks
with an index gather instead, its indices those torch's own resize takes
(read from a resize of an index-coded screen). Where the two agree the
transform stays as it is, so `resize_first` can still move it before the
uint8 -> float conversion for the int8 model.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from torch import nn
from torchrl.envs import Resize


def is_nearest(t: object) -> bool:
    """A TorchRL Resize that picks pixels (nearest or nearest-exact) rather than blending them."""
    mode = getattr(getattr(t, "interpolation", None), "value", "")
    return isinstance(t, Resize) and mode.startswith("nearest")


def _torch_picks(t: Resize, h: int, w: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows and columns the transform's own resize takes from an h x w screen of `dtype`.

    The screen is index-coded in the dtype the env gives (torch's index arithmetic follows it: float64 picks
    another row than float32 at 210 -> 95); the codes are exact below 2**24 pixels.
    """
    coded = torch.arange(h * w, dtype=dtype if dtype.is_floating_point else torch.float32).reshape(1, h, w)
    picked = t._apply_transform(coded)[0].long()
    return picked[:, 0] // w, picked[0, :] % w


@cache
def onnx_picks_like_torch(h: int, w: int, out_h: int, out_w: int, mode: str) -> bool:
    """Whether onnxruntime's Resize, as torch exports it, picks the pixels torch's resize picks at these sizes."""
    import onnxruntime
    from onnx import TensorProto, helper

    if mode != "nearest":  # nearest-exact exports with other rounding; gather rather than trust it untested
        return False
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest", nearest_mode="floor",
                            coordinate_transformation_mode="asymmetric")
    graph = helper.make_graph([node], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 1, out_h, out_w])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    coded = np.arange(h * w, dtype=np.float32).reshape(1, 1, h, w)  # exact in float32 below 2**24 pixels
    theirs = session.run(None, {"x": coded})[0].reshape(out_h, out_w).astype(np.int64)
    expected = torch.nn.functional.interpolate(torch.from_numpy(coded), size=(out_h, out_w), mode="nearest")
    return bool(h * w < 2**24 and np.array_equal(theirs, expected.reshape(out_h, out_w).long().numpy()))


def screen_of(t: Resize, key: object) -> tuple[tuple[int, int], torch.dtype] | None:
    """The (height, width) and dtype the env gives `key` just before the transform, if its spec says."""
    try:
        spec = t.parent.full_observation_spec[key]
    except (AttributeError, KeyError):
        return None
    shape = spec.shape
    return ((int(shape[-2]), int(shape[-1])), spec.dtype) if len(shape) >= 2 else None


class NearestResize(nn.Module):
    """The user's nearest Resize in the graph: itself where ONNX agrees with torch, an index gather elsewhere."""

    def __init__(self, resize: Resize, screen: tuple[tuple[int, int], torch.dtype] | None) -> None:
        super().__init__()
        self.resize = resize
        self.size, dtype = screen if screen is not None else (None, torch.float32)
        out = (int(resize.w), int(resize.h))  # TorchRL's Resize(w, h) resizes to [w, h]
        self.gather = self.size is not None and self.size != out and not (
            dtype == torch.float32 and onnx_picks_like_torch(*self.size, *out, resize.interpolation.value))
        # Computed here, outside the trace: inside it the index-coded resize would be traced into the graph.
        rows, cols = (_torch_picks(resize, *self.size, dtype) if self.gather
                      else (torch.zeros(0, dtype=torch.long),) * 2)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The resized observation (shapes are static at export: the choice was made for this size)."""
        if not self.gather or tuple(obs.shape[-2:]) != self.size:
            return self.resize._apply_transform(obs)
        return obs.index_select(-2, self.rows).index_select(-1, self.cols)
