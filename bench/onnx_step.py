"""The ONNX step of an export, as torch.onnx does it alone beside edgerl's (registry kept, graph not traced again).

    python bench/onnx_step.py [--rounds 3]

Each round exports the same policies in one process both ways, alternated: `torch.onnx.export(graph, dynamo=True)`
(what export.py did before) and `onnx_program(program)` (host/bundle/onnx_export.py: the ExportedProgram the pt2
file is saved from, and torch.onnx's function registry built once per process). The policies are edgerl's three
built-in Atari networks (dqn, stacked, lstm) and a sensor MLP. No call is left out: edgerl's first one builds
the registry, as the first ONNX step of every `edgerl export` process does.
"""

import argparse
import sys
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _measure import alternated, cpu_name  # noqa: E402


def graphs() -> list[tuple[str, object, tuple]]:
    """(name, PolicyGraph, example args) for each policy, as export.py builds them."""
    import torch
    from torchrl.envs.utils import ExplorationType

    from device.manifest import EnvSpec
    from host.bundle.sources import builtin_source
    from host.bundle.tracing import build_graph

    made = []
    for net in ("dqn", "stacked", "lstm"):
        source = builtin_source(net, EnvSpec(), seed=0, epsilon=None)
        graph, args = build_graph(source.policy.eval(), source.env, None, ExplorationType.DETERMINISTIC)
        made.append((net, graph, args))
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Tanh(), torch.nn.Linear(64, 2)).eval()
    made.append(("sensor mlp", mlp, (torch.zeros(1, 8),)))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch

    from host.bundle.onnx_export import onnx_program

    made = graphs()
    print(f"{len(made)} policies, {cpu_name()}, {args.rounds} round(s)", flush=True)
    arms = {
        "torch.onnx alone": lambda graph, a: torch.onnx.export(graph, a, dynamo=True, verbose=False),
        "edgerl": lambda graph, a: onnx_program(torch.export.export(graph, a, strict=False), a, verbose=False),
    }

    def timed(export) -> float:  # noqa: ANN001
        start = time.perf_counter()
        with torch.no_grad():
            for _, graph, a in made:
                export(graph, a)
        return (time.perf_counter() - start) / len(made)

    medians = alternated({name: partial(timed, export) for name, export in arms.items()}, args.rounds,
                         "s an export")
    alone, ours = medians["torch.onnx alone"], medians["edgerl"]
    print(f"median: torch.onnx alone {alone:.2f} s, edgerl {ours:.2f} s an export (edgerl's pt2 trace included): "
          f"{alone / ours:.2f}x")


if __name__ == "__main__":
    main()
