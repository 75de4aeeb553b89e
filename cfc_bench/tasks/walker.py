"""Walker2d kinematics: predict the next MuJoCo Walker2d state at every step, irregularly sampled.

Protocol (``../shared/paper/protocols.md``): 400 rollouts ``rollout_000.npy …
rollout_399.npy``, float64 ``(T, 17)``. The input at step ``t`` is state ``t`` and its
target state ``t+1`` (both cast to float32, no normalisation), so a rollout holds
``T - 1`` pairs. Files are split by name: sorted, shuffled by ``RandomState(125487)``,
the first 60 test, the next 40 validation, the other 300 train.

Irregular sampling, as the reference draws it: one ``RandomState(891374)`` makes one
``rand()`` per pair, split by split (train, validation, test), file by file in split
order; a pair is kept when its draw is below 0.9, and its elapsed time is the number of
pairs since the previous kept one (counted from the start of the file, so 1 when none was
dropped). Drawing ``T - 1`` numbers per file in one call consumes the same stream.
Windows of 64 kept pairs start at ``range(0, n - 64, 16)`` of each file: 9,684 train,
1,272 validation and 1,937 test windows. Elapsed times stay in raw steps.

Quirk (``protocol=paper``): the reference tracks the best validation loss but tests the
last epoch's weights, so the paper protocol selects the last epoch; the default protocol
leaves the choice to the trainer (best validation epoch by default).

The raw files load and window in well under a second, so no preprocessed cache is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from cfc_bench.data.store import dataset_dir, reading
from cfc_bench.errors import DataError
from cfc_bench.metrics import MSE, Metric
from cfc_bench.models.base import SequenceIO
from cfc_bench.tasks.base import DataConfig, Protocol, Select, SequenceData, Task, TaskConfig

FILES = tuple(f"rollout_{i:03d}.npy" for i in range(400))
STATE_SIZE = 17
SPLIT_SEED, SAMPLING_SEED = 125487, 891374
N_TEST, N_VAL = 60, 40  # int(0.15 * 400) and int(0.25 * 400) - int(0.15 * 400)
KEEP_PROB = 0.9
WINDOW, STRIDE = 64, 16
SPLIT_ORDER = ("train", "val", "test")  # the order the sampling RNG visits the splits


@dataclass
class WalkerConfig(TaskConfig):
    name: str = "walker"
    metric: ClassVar[Metric] = MSE

    def has_validation(self) -> bool:
        return True

    def build(self, data: DataConfig) -> Task:
        folder = dataset_dir("walker", list(FILES), data)
        paper = Protocol(self.protocol) is Protocol.paper
        task = Task(
            "walker",
            SequenceIO(STATE_SIZE, STATE_SIZE),
            per_step=True,
            metric=self.metric,
            splits=make_splits(folder),
            select=Select.last if paper else None,
        )
        if paper:
            task.notes["select"] = "last epoch's weights, as the reference tests them"
        task.limit_train(self.train_limit)
        return task


def split_files(names: list[str]) -> dict[str, list[str]]:
    """The reference's file split: sorted names shuffled by ``RandomState(125487)``."""
    files = sorted(names)
    np.random.RandomState(SPLIT_SEED).shuffle(files)
    return {
        "train": files[N_TEST + N_VAL :],
        "val": files[N_TEST : N_TEST + N_VAL],
        "test": files[:N_TEST],
    }


def load_rollout(path: Path) -> np.ndarray:
    with reading(path, "walker"):
        states = np.load(path)
    if states.ndim != 2 or states.shape[1] != STATE_SIZE or len(states) < 2:
        raise DataError(
            f"{path} holds an array of shape {states.shape}; expected (T, {STATE_SIZE}) with "
            "T >= 2. Download the walker data again."
        )
    return states


def subsample(pairs: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the kept pairs of one file and their elapsed times (raw steps)."""
    kept = np.flatnonzero(rng.rand(pairs) < KEEP_PROB)
    elapsed = np.diff(kept, prepend=-1)
    return kept, elapsed


def windows(n: int) -> np.ndarray:
    """Index array ``[W, 64]`` of the windows of a sequence of ``n`` kept pairs."""
    starts = np.arange(0, n - WINDOW, STRIDE)
    return starts[:, None] + np.arange(WINDOW)


def make_split(rollouts: list[np.ndarray], rng: np.random.RandomState) -> SequenceData:
    xs, dts, ys = [], [], []
    for states in rollouts:
        kept, elapsed = subsample(len(states) - 1, rng)
        index = windows(len(kept))
        xs.append(states[kept][index])
        ys.append(states[kept + 1][index])
        dts.append(elapsed[index])
    x = torch.tensor(np.concatenate(xs), dtype=torch.float32)
    return SequenceData(
        x=x,
        dt=torch.tensor(np.concatenate(dts), dtype=torch.float32),
        mask=torch.ones(x.shape[:2], dtype=torch.bool),
        y=torch.tensor(np.concatenate(ys), dtype=torch.float32),
    )


def make_splits(folder: Path) -> dict[str, SequenceData]:
    files = split_files(list(FILES))
    rng = np.random.RandomState(SAMPLING_SEED)
    return {
        split: make_split([load_rollout(folder / name) for name in files[split]], rng)
        for split in SPLIT_ORDER
    }
