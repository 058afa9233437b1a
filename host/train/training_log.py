"""Training progress: a progress bar, TorchRL's logger, an episodes CSV, and the learning-curve PNG."""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import time
from collections import deque
from pathlib import Path

import numpy as np

EPISODES = "episodes.csv"
EVALUATIONS = "evaluations.csv"


class TrainingLog:
    """One per run; appends, so a resumed run continues the same files."""

    def __init__(self, run: Path, total_frames: int, start_frames: int = 0, progress: bool = True,
                 start_wall: float = 0.0) -> None:
        from torchrl.record.loggers import get_logger

        self.run = Path(run)
        self.started = time.monotonic()
        # A resumed run replays, bit for bit, the iterations its last process logged after
        # the checkpoint; keeping those rows would count their episodes twice.
        forget_after(self.run, start_frames)
        self.wall_offset = start_wall
        self.recent: deque[float] = deque(maxlen=20)
        # TorchRL's TensorBoard logger when tensorboard is installed, its CSV logger otherwise.
        backend = "tensorboard" if importlib.util.find_spec("tensorboard") else "csv"
        self.logger = get_logger(backend, logger_name=str(self.run / "logs"), experiment_name="train")
        self.bar = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total_frames, initial=start_frames, unit="frame", unit_scale=True,
                            ncols=shutil.get_terminal_size().columns, nrows=shutil.get_terminal_size().lines,
                            desc="train")
        self._episodes = open(self.run / EPISODES, "a", newline="")
        self._writer = csv.writer(self._episodes)
        if self._episodes.tell() == 0:
            self._writer.writerow(["frames", "wall_s", "return", "length"])
        self._last_frames = start_frames
        self._last_eval = "n/a"

    def step(self, frames: int, finished: list[tuple[float, int]], **scalars: float) -> None:
        """Record one iteration."""
        wall = self.wall_offset + time.monotonic() - self.started
        for ret, length in finished:
            self.recent.append(ret)
            self._writer.writerow([frames, f"{wall:.1f}", ret, length])
        self._episodes.flush()
        for name, value in scalars.items():
            self.logger.log_scalar(name, value, step=frames)
        if self.recent:
            self.logger.log_scalar("return_recent", float(np.mean(self.recent)), step=frames)
        if self.bar is not None:
            self.bar.update(frames - self._last_frames)
            recent = f"{np.mean(self.recent):+.1f}" if self.recent else "n/a"
            split = scalars.get("collect_s", 0.0), scalars.get("learn_s", 0.0)
            if "eval_return" in scalars:
                self._last_eval = f"{scalars['eval_return']:+.1f}"
            self.bar.set_postfix_str(f"return {recent} | greedy eval {self._last_eval} | "
                                     f"collect {split[0]:.1f}s learn {split[1]:.1f}s")
        self._last_frames = frames

    def close(self) -> None:
        """Flush and close."""
        if self.bar is not None:
            self.bar.close()
        self._episodes.close()


def append_evaluation(run: Path, frames: int, wall_s: float, scores: list[float]) -> None:
    """One row per greedy evaluation: frames, wall time, mean score, the scores."""
    path = Path(run) / EVALUATIONS
    new = not path.is_file()
    with open(path, "a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["frames", "wall_s", "mean", "scores"])
        writer.writerow([frames, f"{wall_s:.1f}", f"{float(np.mean(scores)):.2f}", " ".join(f"{s:g}" for s in scores)])


def read_evaluations(run: Path) -> np.ndarray:
    """Rows (frames, wall_s, mean score) of the run's greedy evaluations."""
    path = Path(run) / EVALUATIONS
    if not path.is_file():
        return np.zeros((0, 3))
    with open(path) as fh:
        rows = [[float(x) for x in r[:3]] for r in list(csv.reader(fh))[1:] if r]
    return np.asarray(rows).reshape(-1, 3)


def forget_after(run: Path, frames: int) -> None:
    """Drop the episode, evaluation and scalar rows logged after `frames` (rewritten atomically)."""
    files = [Path(run) / EPISODES, Path(run) / EVALUATIONS, *sorted((Path(run) / "logs").glob("**/scalars/*.csv"))]
    for path in files:
        if not path.is_file():
            continue
        with open(path, newline="") as fh:
            rows = [r for r in csv.reader(fh) if r]
        kept = [r for r in rows if not r[0].isdigit() or int(r[0]) <= frames]
        if len(kept) == len(rows):
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as fh:
            csv.writer(fh).writerows(kept)
        os.replace(tmp, path)


def read_episodes(run: Path) -> np.ndarray:
    """Rows (frames, wall_s, return, length) of the run's finished episodes."""
    path = Path(run) / EPISODES
    if not path.is_file():
        return np.zeros((0, 4))
    with open(path) as fh:
        rows = [[float(x) for x in r] for r in list(csv.reader(fh))[1:] if r]
    return np.asarray(rows).reshape(-1, 4)


def plot_run(run: Path, out: Path | None = None) -> Path:
    """Learning curve: return vs frames and vs wall time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not Path(run).is_dir():
        raise ValueError(f"run folder {run} does not exist; pass the --out folder of `edgerl train`")
    rows = read_episodes(run)
    if not len(rows):
        raise ValueError(f"{run} has no finished episodes yet; train longer before plotting")
    out = Path(out or Path(run) / "learning_curve.png")
    evals = read_evaluations(run)
    window = max(1, min(20, len(rows) // 5))
    smooth = np.convolve(rows[:, 2], np.ones(window) / window, mode="valid")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, col, label in ((axes[0], 0, "emulator frames"), (axes[1], 1, "wall time (h)")):
        x = rows[:, col] / (3600.0 if col == 1 else 1.0)
        ax.plot(x, rows[:, 2], ".", alpha=0.3, label="episode return")
        ax.plot(x[window - 1:], smooth, "-", label=f"mean of {window} (exploring)")
        if len(evals):
            ex = evals[:, col] / (3600.0 if col == 1 else 1.0)
            ax.plot(ex, evals[:, 2], "o-", color="black", ms=4, label="greedy, device loop")
        ax.set_xlabel(label)
        ax.set_ylabel("return")
        ax.axhline(18, color="gray", ls="--", lw=0.8)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.suptitle(f"{Path(run).name}: {len(rows)} episodes")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
