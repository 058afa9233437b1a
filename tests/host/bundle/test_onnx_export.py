"""Export's ONNX step keeps torch.onnx's function registry between exports: the model it writes is torch.onnx's own,
and a user's own torch.onnx.export in the same process, custom translations and all, is left as it was."""

import random

import onnx
import pytest
import torch
from onnxscript import opset18 as op
from torch.onnx._internal.exporter._registration import ONNXRegistry

from host.bundle.onnx_export import _registry, onnx_program


def drawn_policy(seed: int) -> tuple[torch.nn.Module, tuple]:
    """A sensor policy drawn from a seed: depth, widths, activations, a norm layer or not, logits or probabilities."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    width = rng.choice([3, 8, 17])
    layers: list[torch.nn.Module] = []
    for _ in range(rng.randint(1, 3)):
        out = rng.choice([16, 32, 64])
        layers += [torch.nn.Linear(width, out), rng.choice([torch.nn.ReLU, torch.nn.Tanh, torch.nn.ELU])()]
        if rng.random() < 0.5:
            layers.append(torch.nn.LayerNorm(out))
        width = out
    layers.append(torch.nn.Linear(width, rng.choice([2, 6])))
    if rng.random() < 0.5:
        layers.append(torch.nn.Softmax(dim=-1))
    return torch.nn.Sequential(*layers).eval(), (torch.randn(1, layers[0].in_features),)


def graph_of(model: onnx.ModelProto) -> tuple:
    """What the board runs: nodes with their wiring and attributes, and the weights (not the debug metadata)."""
    nodes = [(n.op_type, n.domain, list(n.input), list(n.output), [str(a) for a in n.attribute])
             for n in model.graph.node]
    weights = sorted((w.name, w.SerializeToString()) for w in model.graph.initializer)
    return nodes, weights, [str(f.node) for f in model.functions]


@pytest.mark.parametrize("seed", [0, 1])
def test_the_kept_registry_writes_the_model_torch_onnx_writes_alone(seed):
    policy, args = drawn_policy(seed)
    with torch.no_grad():
        alone = torch.onnx.export(policy, args, dynamo=True, verbose=False).model_proto
        before = _registry.cache_info()
        ours = onnx_program(torch.export.export(policy, args, strict=False), args, verbose=False).model_proto
        again = onnx_program(torch.export.export(policy, args, strict=False), args, verbose=False).model_proto
    assert graph_of(ours) == graph_of(alone) == graph_of(again)
    after = _registry.cache_info()
    assert after.misses <= before.misses + 1 and after.hits >= before.hits + 1, "an export built the registry again"


def test_a_users_own_custom_translation_after_edgerls_export_is_theirs_alone():
    relu = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()).eval()
    args = (torch.randn(1, 4),)
    kept = ONNXRegistry.__dict__["from_torchlib"]
    with torch.no_grad():
        onnx_program(torch.export.export(relu, args, strict=False), args, verbose=False)
        assert ONNXRegistry.__dict__["from_torchlib"] is kept, "torch.onnx's own registry build is back in place"
        theirs = torch.onnx.export(relu, args, dynamo=True, verbose=False,
                                   custom_translation_table={torch.ops.aten.relu.default: lambda x: op.Sigmoid(x)})
        ours = onnx_program(torch.export.export(relu, args, strict=False), args, verbose=False)
    assert "Sigmoid" in {n.op_type for n in theirs.model_proto.graph.node}
    assert {n.op_type for n in ours.model_proto.graph.node} >= {"Relu"}, "the user's translation leaked into edgerl's"
