"""A strided first convolution on few channels, rewritten as SpaceToDepth + a stride-1 convolution.

An 8x8, stride-4 convolution on a 4-frame stack (the Nature CNN's first
layer) is the int8 model's slowest op on an x86 core without VNNI: its
im2col copies four bytes per kernel tap, 256 small copies per output. The
same layer is a SpaceToDepth(4) of the input (64 channels of 21x21) and a
2x2 stride-1 convolution whose weights are the same numbers rearranged: the
same function (in fp32 up to summation order; `quantize` checks the
rewritten model against the original, max |d| <= 1e-4, before using it).
On the shipped Pong policy it takes the int8 model's p50 from 0.71 to
0.65 ms; its int8 model is then judged by play like any other.
"""

from __future__ import annotations

import numpy as np

from host.bundle.resize_first import drop_unused_initializers

MAX_CHANNELS = 8
"""Only layers on this few input channels are rewritten: wider inputs im2col efficiently already."""


def _attrs(node) -> dict:  # noqa: ANN001 - onnx.NodeProto
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _shapes(model) -> dict[str, list[int]]:  # noqa: ANN001 - onnx.ModelProto
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    found = {}
    for v in [*inferred.graph.value_info, *inferred.graph.input]:
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
        found[v.name] = dims
    return found


def _fits(node, attrs: dict, weights: np.ndarray, shape: list[int] | None) -> int | None:  # noqa: ANN001
    """The block size when this Conv can be rewritten, else None."""
    strides = attrs.get("strides", [1, 1])
    kernel = list(weights.shape[2:])
    if (weights.ndim != 4 or len(set(strides)) != 1 or strides[0] < 2 or attrs.get("group", 1) != 1
            or any(attrs.get("pads", [0, 0, 0, 0])) or any(d != 1 for d in attrs.get("dilations", [1, 1]))
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or weights.shape[1] > MAX_CHANNELS):
        return None
    s = strides[0]
    if any(k % s for k in kernel) or shape is None or len(shape) != 4 or any(d <= 0 or d % s for d in shape[2:]):
        return None
    return s


def space_to_depth(model):  # noqa: ANN001, ANN201 - onnx.ModelProto in and out
    """A copy of `model` with each fitting strided Conv rewritten; how many were."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    shapes = _shapes(model)
    rewritten = 0
    for node in list(graph.node):
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        attrs = _attrs(node)
        weights = numpy_helper.to_array(inits[node.input[1]])
        s = _fits(node, attrs, weights, shapes.get(node.input[0]))
        if s is None:
            continue
        out_ch, in_ch, kh, kw = weights.shape
        # SpaceToDepth puts input[c, h*s + b1, w*s + b2] at channel (b1*s + b2)*C + c: the weights follow.
        moved = (weights.reshape(out_ch, in_ch, kh // s, s, kw // s, s).transpose(0, 3, 5, 1, 2, 4)
                 .reshape(out_ch, s * s * in_ch, kh // s, kw // s))
        name = f"{node.input[1]}_space_to_depth"
        graph.initializer.append(numpy_helper.from_array(moved.astype(weights.dtype), name))
        packed = f"{node.input[0]}_space_to_depth"
        s2d = helper.make_node("SpaceToDepth", [node.input[0]], [packed], blocksize=s,
                               name=f"{node.name}_space_to_depth")
        conv = helper.make_node("Conv", [packed, name, *node.input[2:]], list(node.output), name=node.name,
                                kernel_shape=[kh // s, kw // s], strides=[1, 1])
        position = list(graph.node).index(node)
        del graph.node[position]
        graph.node.insert(position, conv)
        graph.node.insert(position, s2d)
        rewritten += 1
    drop_unused_initializers(graph)
    onnx.checker.check_model(model)
    return model, rewritten
