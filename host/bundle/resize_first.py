"""Move a graph's input-side nearest-neighbour resize ahead of its conversion to float.

A TorchRL pixel pipeline exports as Transpose -> Cast -> Div -> Resize
(nearest): every screen pixel is converted to float and scaled, then most
are thrown away. Nearest-neighbour resizing only picks elements, and
layout ops and elementwise ops with a scalar commute with picking, so the
same chain can run as Resize (on the uint8 input itself, its sizes mapped
back through the layout ops) -> layout ops -> elementwise ops: the same
floats, bit for bit, on a fifth of the data.

Used for the int8 model, whose network is fast enough that the fp32 front
weighs on it; `exact()` checks the moved model against the original on
real inputs before it is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LAYOUT = {"Transpose", "Unsqueeze", "Squeeze", "Reshape"}
ELEMENTWISE = {"Cast", "Div", "Mul", "Add", "Sub"}


@dataclass
class _Chain:
    nodes: list  # onnx.NodeProto from the input to the Resize, in order
    resize: object


def _constants(graph) -> dict[str, np.ndarray]:  # noqa: ANN001 - onnx.GraphProto
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _consumers(graph) -> dict[str, list]:  # noqa: ANN001
    found: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def _chain_from(graph, name: str, consts: dict, users: dict, outputs: set[str]) -> _Chain | None:  # noqa: ANN001
    """The single-consumer run of layout/scalar ops from graph input `name` to a nearest Resize, if any."""
    nodes, tensor = [], name
    while True:
        nxt = users.get(tensor, [])
        if len(nxt) != 1 or tensor in outputs:
            return None
        node = nxt[0]
        others = [i for i in node.input if i != tensor]
        if node.op_type == "Resize":
            mode = next((a.s for a in node.attribute if a.name == "mode"), b"nearest")
            if mode != b"nearest" or node.input[0] != tensor or any(i and i not in consts for i in others):
                return None
            return _Chain(nodes, node)
        if node.op_type in LAYOUT and all(i in consts for i in others if i):
            nodes.append(node)
        elif node.op_type in ELEMENTWISE and all(i in consts and consts[i].size == 1 for i in others):
            nodes.append(node)
        else:
            return None
        tensor = node.output[0]


def _input_sizes(resize, layout: list, consts: dict) -> np.ndarray | None:  # noqa: ANN001 - onnx.NodeProto
    """The Resize's `sizes` in the graph input's layout, walking Transpose/Unsqueeze/Squeeze back; None if unknown."""
    inputs = list(resize.input) + [""] * (4 - len(resize.input))
    if inputs[1] or inputs[2] or not inputs[3] or inputs[3] not in consts or any(a.name == "axes"
                                                                               for a in resize.attribute):
        return None
    shape = [int(d) for d in consts[inputs[3]]]
    for node in reversed(layout):
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Transpose":
            perm = list(attrs["perm"].ints) if "perm" in attrs else list(reversed(range(len(shape))))
            before = [0] * len(shape)
            for i, p in enumerate(perm):
                before[p] = shape[i]
            shape = before
        elif node.op_type in ("Unsqueeze", "Squeeze") and len(node.input) == 2 and node.input[1] in consts:
            axes = [int(a) for a in consts[node.input[1]].reshape(-1)]
            if node.op_type == "Unsqueeze":
                axes = sorted(a % len(shape) for a in axes)
                if any(shape[a] != 1 for a in axes):
                    return None
                shape = [d for i, d in enumerate(shape) if i not in axes]
            else:
                rank = len(shape) + len(axes)
                for a in sorted(a % rank for a in axes):
                    shape.insert(a, 1)
        else:
            return None
    return np.array(shape, dtype=np.int64)


def resize_first(model):  # noqa: ANN001, ANN201 - onnx.ModelProto in and out
    """A copy of `model` whose input-side nearest resizes run before the elementwise ops; how many were moved."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    consts, users = _constants(graph), _consumers(graph)
    outputs = {o.name for o in graph.output}
    moved = 0
    for graph_input in graph.input:
        chain = _chain_from(graph, graph_input.name, consts, users, outputs)
        if chain is None or not any(n.op_type in ELEMENTWISE for n in chain.nodes):
            continue
        layout = [n for n in chain.nodes if n.op_type in LAYOUT]
        elementwise = [n for n in chain.nodes if n.op_type in ELEMENTWISE]
        final = chain.resize.output[0]
        sizes = _input_sizes(chain.resize, layout, consts)
        if sizes is not None:
            # Resize the input itself (fewer elements for the layout ops too), at the sizes the layout maps back to.
            name = f"{chain.resize.output[0]}_sizes_at_input"
            graph.initializer.append(numpy_helper.from_array(sizes, name))
            consts[name] = sizes
            chain.resize.input[3] = name
            order = [chain.resize, *layout, *elementwise]
        else:
            # Rewire: input -> layout ops -> Resize -> elementwise ops, the last one writing what Resize wrote.
            order = [*layout, chain.resize, *elementwise]
        prev = graph_input.name
        for node in order:
            first = next(i for i, x in enumerate(node.input) if x and x not in consts)
            node.input[first] = prev
            node.output[0] = f"{node.output[0]}_early" if node is not order[-1] else final
            prev = node.output[0]
        at = min(i for i, n in enumerate(graph.node) if any(n is m for m in order))
        kept = [n for n in graph.node if not any(n is m for m in order)]
        del graph.node[:]
        graph.node.extend([*kept[:at], *order, *kept[at:]])
        stale = {o for n in order for o in n.output} | {final}
        keep_info = [v for v in graph.value_info if v.name not in stale]
        del graph.value_info[:]
        graph.value_info.extend(keep_info)
        moved += 1
    drop_unused_initializers(graph)
    return model, moved


def drop_unused_initializers(graph) -> None:  # noqa: ANN001 - onnx.GraphProto
    """Remove the initializers no node reads any more (onnxruntime warns about each one it finds)."""
    used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def exact(original: bytes, rewritten: bytes, feeds: list[dict], atol: float = 0.0) -> bool:
    """True when both models give bit-identical outputs on every feed (float outputs within `atol` if given)."""
    import onnxruntime as ort

    a = ort.InferenceSession(original, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(rewritten, providers=["CPUExecutionProvider"])
    for feed in feeds:
        for x, y in zip(a.run(None, feed), b.run(None, feed), strict=True):
            if x.shape != y.shape:
                return False
            close = np.allclose(x, y, rtol=0, atol=atol) if atol and x.dtype.kind == "f" else np.array_equal(x, y)
            if not close:
                return False
    return True
