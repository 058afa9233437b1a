"""A board's recorded episodes as TorchRL data.

A game run is regenerated through the user's own env (the one they exported with, transforms and all): seeded
as the board's run was, stepped with the recorded actions, episode after episode, each step's screen checked
against the CRC the board recorded, each reward and episode end against the board's. What comes back is
TorchRL's own `env.rollout` for those seeds and actions, every key, plus `("collector", "traj_ids")` as
TorchRL's collectors number trajectories; given the policy the bundle came from, also what it writes (a
recurrent state, action values), as in the user's rollout with it. A run on the user's own plant comes back
as recorded: its observations under their names, the action, `("next", ...)` reward (NaN where the plant has
no `outcome()`), done, terminated, truncated, and `is_init` at each episode's first decision.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tensordict import NestedKey, TensorDict
from tensordict.nn import TensorDictModuleBase
from torchrl.data import LazyMemmapStorage, OneHot, ReplayBuffer
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type

from device.layout import RECORD_INDEX as INDEX
from device.manifest import EnvSpec
from device.report import screen_crc
from host.data.shards import DataError, Run, read_recording_index, read_runs
from host.envs import ale_of, make_base_env

__all__ = ["DataError", "load_episodes", "replay_buffer"]


class _Replay(TensorDictModuleBase):
    """The board's actions as a TorchRL policy, noting the screen each one was taken on (the last step's after)."""

    in_keys: list = []
    out_keys: list = ["action"]

    def __init__(self, actions: np.ndarray, env: EnvBase, ale: object,
                 policy: TensorDictModuleBase | None = None) -> None:
        super().__init__()
        self.actions, self.spec, self.ale, self.crcs = actions, env.action_spec, ale, []
        self.policy = policy

    def forward(self, tensordict: TensorDict) -> TensorDict:
        """Write the next recorded action in the env's own encoding (after the user's policy wrote its keys)."""
        step = len(self.crcs)
        # The screen now is the one the previous action led to (none before the first).
        self.crcs.append(screen_crc(self.ale.getScreenRGB()) if step else None)
        if self.policy is not None:
            tensordict = self.policy(tensordict)
        index = torch.as_tensor(int(self.actions[step]))
        if isinstance(self.spec, OneHot):
            tensordict["action"] = torch.nn.functional.one_hot(index, self.spec.shape[-1]).to(self.spec.dtype)
        else:
            tensordict["action"] = index.to(self.spec.dtype)
        return tensordict

    def screens_after(self) -> np.ndarray:
        """The CRC of the screen each recorded step led to."""
        return np.asarray([*self.crcs[1:], screen_crc(self.ale.getScreenRGB())], dtype=np.uint32)


def _check(run: Run, episode: int, what: str, board: np.ndarray, host: np.ndarray) -> None:
    if len(board) != len(host) or not np.array_equal(board, host):
        n = min(len(board), len(host))
        first = next((i for i in range(n) if board[i] != host[i]), n)
        raise DataError(f"run {run.name}, episode {episode}: the {what} differ from step {first} on: the env given "
                        "does not play the game the board played (another game, frame skip, sticky actions, or "
                        "action set?)")


def _check_observations(run: Run, env: EnvBase) -> None:
    """The env given makes what the board's policy read (its shapes, as export recorded them), or one line."""
    spec = env.observation_spec
    names = spec.keys(True, True)
    for name, shape in (run.meta.get("env_observations") or {}).items():
        key = tuple(name.split(".")) if "." in name else name
        made = list(spec[key].shape) if key in names else None
        if made != shape:
            makes = f"makes {name} of shape {made}" if made is not None else f"has no {name}"
            raise DataError(f"run {run.name}: the env given {makes}, but the bundle's policy was exported reading "
                            f"{name} of shape {shape} (another Resize, crop or frame stack?): pass the env the bundle "
                            "was exported with")


def _game_run(run: Run, env: EnvBase | None, first_traj: int,
              policy: TensorDictModuleBase | None) -> Iterator[TensorDict]:
    """Episode by episode: a run of 30 Pong games regenerated whole would hold 26 GB of frames."""
    if not run.complete_from_start:
        warnings.warn(f"run {run.name} lacks decisions from its start (pruned by --record-max-mb or dropped): a "
                      "game is regenerated from its seed, so this run is skipped", stacklevel=3)
        return
    given = env
    env = env if env is not None else make_base_env(EnvSpec.from_dict(run.meta["env"]))
    ale_env = ale_of(env)
    if ale_env is None:
        raise DataError(f"run {run.name} is a game ({run.meta['env']['game']}): pass the single (not batched) "
                        "TorchRL env of that game the policy was exported with")
    if given is not None:  # the user's env must make what the board's policy read (without one: the raw screens)
        _check_observations(run, env)
    env.set_seed(int(run.meta["seed"]))
    cols = run.columns
    for n, episode in enumerate(dict.fromkeys(cols["episode"].tolist())):
        rows = cols["episode"] == episode
        replay = _Replay(cols["action"][rows], env, ale_env.ale, policy)
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            td = env.rollout(int(rows.sum()), policy=replay, break_when_any_done=True)
        # Screens first: where a game parted from the board's, its length and rewards part too, later.
        _check(run, episode, "screens", cols["screen_crc32"][rows], replay.screens_after())
        _check(run, episode, "rewards", cols["reward"][rows], td["next", "reward"].reshape(-1).numpy())
        _check(run, episode, "episode ends", cols["terminated"][rows], td["next", "terminated"].reshape(-1).numpy())
        _check(run, episode, "episode lengths", np.array([rows.sum()]), np.array([td.shape[0]]))
        td.set(("collector", "traj_ids"), torch.full(td.shape, first_traj + n, dtype=torch.int64))
        yield td


def _policy_along(td: TensorDict, policy: TensorDictModuleBase, names: list[str]) -> TensorDict:
    """A plant run's transitions with what the policy writes, decision by decision, its `("next", ...)` carried.

    The board's policy carried its state the same way: from each decision to the next, reset where `is_init`
    (an episode's start, or after a gap). A state not yet carried starts as zeros, as TorchRL's primer starts it.
    """
    outs, carried = [], None
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for i in range(td.shape[0]):
            step = td[i].select(*names, "is_init").clone()
            if carried is not None:
                step.update(carried)
            out = policy(step)
            carried = out["next"].clone() if "next" in out.keys() else TensorDict()
            for key in carried.keys(True, True):
                if key not in out.keys(True):
                    out.set(key, torch.zeros_like(carried[key]))
            outs.append(out.exclude(*names, "is_init", "action"))
    return td.update(torch.stack(outs))


def _plant_run(run: Run, first_traj: int, policy: TensorDictModuleBase | None) -> list[TensorDict]:
    cols = run.columns
    steps = cols["step"]
    # A decision becomes a transition when the one after it is recorded: that is its ("next", observation).
    keep = np.flatnonzero(np.diff(steps) == 1)
    if not len(keep):
        return []
    names = [k[4:] for k in cols if k.startswith("obs.")]
    ended = cols["terminated"] | cols["truncated"]
    starts = np.ones(len(steps), dtype=bool)
    starts[1:] = ended[:-1] | (np.diff(steps) != 1)
    obs = {name: torch.from_numpy(cols[f"obs.{name}"]) for name in names}

    def column(values: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(values[rows])).unsqueeze(-1)

    td = TensorDict({**{name: v[keep] for name, v in obs.items()}, "action": torch.from_numpy(cols["action"][keep]),
                     "is_init": column(starts, keep),
                     "next": {**{name: v[keep + 1] for name, v in obs.items()},
                              "reward": column(cols["reward"], keep), "done": column(ended, keep),
                              "terminated": column(cols["terminated"], keep),
                              "truncated": column(cols["truncated"], keep)}}, batch_size=[len(keep)])
    td.set(("collector", "traj_ids"), torch.from_numpy(np.cumsum(starts)[keep] - 1 + first_traj))
    return [td if policy is None else _policy_along(td, policy, names)]


def _run_data(folders: Sequence[Path], env: EnvBase | None, keys: Sequence[NestedKey] | None,
              transform: Callable[[TensorDict], TensorDict] | None = None,
              policy: TensorDictModuleBase | None = None) -> Iterator[TensorDict]:
    traj = 0
    for folder in folders:
        for run in read_runs(folder):
            game = run.meta.get("kind") == "game"
            tds = _game_run(run, env, traj, policy) if game else _plant_run(run, traj, policy)
            for td in tds:
                traj = int(td["collector", "traj_ids"].max()) + 1
                if transform is not None:
                    td = transform(td)
                if keys is not None:
                    missing = [k for k in keys if k not in td.keys(True)]
                    if missing:
                        raise DataError(f"run {run.name} has no {', '.join(map(str, missing))}: its keys are "
                                        f"{', '.join(map(str, td.keys(True, True)))}")
                    td = td.select(*keys, ("collector", "traj_ids"))
                yield td


def check_recording_folder(folder: Path) -> None:
    """One line when `folder` is not one recording: missing, a file, or a board's (or data/'s) folder above some."""
    if not folder.exists():
        raise DataError(f"{folder} does not exist: give a recording's folder as `edgerl data pull` wrote it "
                        "(OUT/BOARD/RECORDING)")
    if not folder.is_dir():
        raise DataError(f"{folder} is a file: give the recording's folder (it holds {INDEX} and its shards)")
    if (folder / INDEX).is_file():
        return
    below = sorted({str(p.parent.relative_to(folder)) for p in [*folder.glob(f"*/{INDEX}"), *folder.glob(
        f"*/*/{INDEX}")]})
    if below:
        shown = ", ".join(below[:6]) + (f" and {len(below) - 6} more" if len(below) > 6 else "")
        raise DataError(f"{folder} holds the recordings {shown}: pass one of them, e.g. {folder / below[0]}")
    raise DataError(f"{folder} holds no recording (no {INDEX}): pull one with `edgerl data pull`")


def load_episodes(folder: Path, env: EnvBase | None = None, keys: Sequence[NestedKey] | None = None,
                  policy: TensorDictModuleBase | None = None) -> TensorDict:
    """Every recorded decision of a pulled folder, as one TensorDict of transitions (see the module's text).

    `env`: the TorchRL env the policy was exported with; needed for game runs whose observations are the
    env's transforms of the screen (without it, the game's raw screens come back under `pixels`).
    `keys`: keep only these (and `("collector", "traj_ids")`), run by run: a game's decision carries its
    screens and transformed frames, ~430 KB for Pong's stacked policy, where a learner may need 115.
    `policy`: the TorchRL policy the bundle was exported from. Run along the recorded decisions (whose actions
    stay the board's), it writes what it writes in the user's own rollout: a recurrent policy's state
    (`recurrent_state_h`, `("next", "recurrent_state_h")`...), its action values. A game's through the env's
    rollout; a plant's decision by decision, its state carried from each to the next and reset at `is_init`.
    """
    check_recording_folder(Path(folder))
    tds = list(_run_data([Path(folder)], env, keys, policy=policy))
    if not tds:
        raise DataError(f"{folder} holds no recorded decisions that can be loaded")
    keys = [set(td.keys(True, True)) for td in tds]
    if any(k != keys[0] for k in keys):
        raise DataError(f"{folder} mixes runs of different kinds or plants; load them from separate folders")
    return torch.cat(tds)


def replay_buffer(folders: Path | Sequence[Path], env: EnvBase | None = None, scratch_dir: Path | None = None,
                  batch_size: int = 256, keys: Sequence[NestedKey] | None = None,
                  transform: Callable[[TensorDict], TensorDict] | None = None,
                  policy: TensorDictModuleBase | None = None) -> ReplayBuffer:
    """Recorded transitions in a TorchRL ReplayBuffer on memory-mapped storage (larger than memory is fine).

    `folders`: one pulled recording, or several (boards', or a teacher's and a student's).
    `transform` sees each episode (a game's) or run (a plant's) whole before it is stored, then `keys` are kept:
    a teacher relabelling a student's recorded games (DAgger), a reward of your own. `policy`: as `load_episodes`.
    """
    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    for folder in folders:
        check_recording_folder(folder)
    tds = _run_data(folders, env, keys, transform, policy)
    first = next(tds, None)
    if first is None:
        raise DataError(f"{', '.join(map(str, folders))}: no recorded decisions that can be loaded")
    # Capacity from the indexes: what the shards hold, without reading them a second time.
    total = sum(s["decisions"] for folder in folders for s in read_recording_index(folder)["shards"])
    buffer = ReplayBuffer(storage=LazyMemmapStorage(total, scratch_dir=scratch_dir), batch_size=batch_size)
    buffer.extend(first)
    for td in tds:
        buffer.extend(td)
    return buffer
