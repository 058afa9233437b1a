"""TorchRL's export tutorial, its recurrent policy, through edgerl: a policy fed by your own sensors.

The policy is the tutorial's, exactly as written there: a python-based
`LSTMModule` (2 layers x 256) on a 32-dim `observation`, `hidden0`/`hidden1`
carried as state, `is_init` marking an episode's first step, an MLP to 5
outputs, between two `BatchSizeTransform`s. There is no simulator: the
factory returns an example input instead of an env, and on the board your
own loop calls `device.Policy`:

    from device import Policy
    policy = Policy.load("bundle")
    policy.reset()
    action = policy.act(observation)      # float32[5]; hidden0/hidden1 carried, is_init handled

    edgerl export --from examples/tutorial_lstm.py:make --out bundle/
"""

from __future__ import annotations

from pathlib import Path

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torchrl.envs import BatchSizeTransform
from torchrl.modules import MLP, LSTMModule


def make_policy() -> TensorDictSequential:
    """The tutorial's recurrent policy."""
    torch.manual_seed(0)
    lstm = LSTMModule(
        input_size=32,
        num_layers=2,
        hidden_size=256,
        in_keys=["observation", "hidden0", "hidden1"],
        out_keys=["intermediate", "hidden0", "hidden1"],
    )
    lstm = lstm.make_python_based()
    recurrent_policy = TensorDictSequential(
        BatchSizeTransform(reshape_fn=lambda x: x.unsqueeze(0)),
        lstm,
        TensorDictModule(MLP(in_features=256, out_features=5, num_cells=[64, 64]), in_keys=["intermediate"],
                         out_keys=["action"]),
        BatchSizeTransform(reshape_fn=lambda x: x.squeeze(0)),
    )
    recurrent_policy.select_out_keys("action", "hidden0", "hidden1")
    return recurrent_policy


def example() -> TensorDict:
    """One input of every key the policy reads, as in the tutorial's export call."""
    return TensorDict({
        "observation": torch.randn(32),
        "hidden0": torch.zeros(2, 256),
        "hidden1": torch.zeros(2, 256),
        "is_init": torch.zeros((), dtype=torch.bool),
    }, batch_size=[])


def make() -> tuple[TensorDictSequential, None, TensorDict]:
    """The factory `edgerl export --from` calls: (policy, None, example)."""
    return make_policy(), None, example()


def main() -> None:
    """Export, verify through time, deploy to a local board and self-test there."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
    from examples._pipeline import example_args, run_pipeline

    args = example_args(__doc__, "build/tutorial-lstm")
    run_pipeline(f"{__file__}:make", args.out, aoti=args.aoti)


if __name__ == "__main__":
    main()
