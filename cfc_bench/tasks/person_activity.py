"""Human activity (UCI "Localization Data for Person Activity"): classify every 10 ms time bin.

Protocol (``../shared/paper/protocols.md``; the reference is the latent-ODE lineage's
``PersonActivity`` loader that the CfC scripts use):

- ``ConfLongDemo_JSI.txt``, no header, rows ``sequence, tag, ticks, date, x, y, z,
  activity`` with .NET ticks (100 ns). A recording is a run of consecutive rows with one
  sequence name (25 in the full file).
- Time bins of 10 ms counted from the recording's first tick:
  ``bin = round((ticks - first) / 1e5)``. Consecutive readings in one bin form one time
  point; several readings of one tag in a bin are averaged (the reference's
  ``reduce="average"``). A time point holds 12 values (4 tags × xyz, tag-major) and a
  12-wide observed mask. No normalisation.
- The label of a time point is the class of its readings (7 classes; "lying" and "lying
  down" share one, and so on, see ``CLASSES``). Where one bin mixes classes the smallest
  class index wins: the reference sets a multi-hot vector and ``argmax`` returns the first.
- Windows of 50 time points start at ``range(0, n - 50, 25)`` of each recording. Elapsed
  time is the bin difference to the previous time point times ``tau``, 0 at a window's
  first step.
- Model input, 24 wide: the values forward-filled within the window (zeros before a tag's
  first reading) and the mask. The reference CfC does this fill inside the model when it
  is handed a 12-wide mask; the task does it here so that every model sees the same input.
- Split: ``sklearn.model_selection.train_test_split`` over the windows, ``train_size=0.8,
  random_state=42, shuffle=True``; no validation split. Windows overlap by half, so a test
  window shares time points with training windows, as in the reference.
- Metric: accuracy over the labelled time points.

Quirks reproduced under ``protocol=paper`` (the default protocol corrects them):

1. The reference spells the last "standing up…" label "standing up from sit on grnd", so
   readings labelled "standing up from sitting on the ground" carry no label, and time
   points with no other labelled reading are ``IGNORE`` (out of loss and metric).
2. It resamples both splits with replacement, ``np.random.choice(n, n)``, without a seed,
   which no run can reproduce. Here the draws come from ``RandomState(resample_seed)``,
   train first, then test; the config sets ``resample_seed`` to the run seed.
3. Its readout has 11 logits (one per raw activity name) of which only the 7 class
   indices are ever targets.
4. It takes rows in file order, so a reading whose tick precedes the previous row's opens
   a new time point with a negative elapsed time, and it bins float64 ticks (ticks near
   6.3e17 exceed float64's 2**53 integer range) rounding halves to even. The default
   protocol sorts each recording's rows by tick and bins the exact integer ticks.

Readings are parsed and binned with whole-array numpy operations; the windows are cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from cfc_bench.data.cache import cached
from cfc_bench.data.store import dataset_dir, raw_identity, reading
from cfc_bench.errors import DataError
from cfc_bench.metrics import ACCURACY, IGNORE, Metric
from cfc_bench.models.base import SequenceIO
from cfc_bench.tasks.base import DataConfig, Protocol, SequenceData, Task, TaskConfig

FILE = "ConfLongDemo_JSI.txt"
COLUMNS = ("sequence", "tag", "ticks", "date", "x", "y", "z", "activity")
TAGS = {  # ankle left, ankle right, chest, belt: the order of the 12 value columns
    "010-000-024-033": 0,
    "010-000-030-096": 1,
    "020-000-033-111": 2,
    "020-000-032-221": 3,
}
CLASSES = {
    "walking": 0,
    "falling": 1,
    "lying": 2,
    "lying down": 2,
    "sitting": 3,
    "sitting down": 3,
    "standing up from lying": 4,
    "standing up from sitting": 4,
    "standing up from sitting on the ground": 4,
    "on all fours": 5,
    "sitting on the ground": 6,
}
N_CLASSES = 7
PAPER_OUTPUTS = 11  # the reference's readout width (quirk 3)
MISSPELLED = "standing up from sitting on the ground"  # unlabelled under the paper protocol
TICKS_PER_BIN = 100_000  # 10 ms in 100 ns ticks
VALUES = 3 * len(TAGS)
WINDOW, STRIDE = 50, 25
TRAIN_FRACTION, SPLIT_SEED = 0.8, 42
FULL_SOURCE = "person_activity"  # the 25 recordings the protocol uses
SAMPLE_SOURCE = "person_activity_sample"  # 3 of them, in the mirrors only
CACHE_VERSION = 1  # bump when the preprocessing changes


@dataclass
class PersonActivityConfig(TaskConfig):
    name: str = "person_activity"
    source: str = FULL_SOURCE  # dataset folder; person_activity_sample = A01-A03 only
    tau: float = 1.0  # elapsed = bin difference * tau (reference: CfC 10, noGate 0.5, Cf-S 0.1)
    resample_seed: int = 0  # seeds quirk 2 under protocol=paper (the YAML passes the run seed)
    metric: ClassVar[Metric] = ACCURACY

    def build(self, data: DataConfig) -> Task:
        paper = Protocol(self.protocol) is Protocol.paper
        folder = self.folder(data)
        path = folder / FILE
        params = {
            "version": CACHE_VERSION,
            "source": self.source,
            "raw": raw_identity(self.source, folder, [FILE], data),
            "paper": paper,
        }
        windows = cached(
            "person_activity", params, lambda: make_windows(path, paper, self.source), data
        )
        x, bins, y = windows["x"], windows["bins"], windows["y"]
        train, test = train_test_split(
            np.arange(len(x)), train_size=TRAIN_FRACTION, random_state=SPLIT_SEED, shuffle=True
        )
        notes = {}
        if self.source != FULL_SOURCE:
            notes["data"] = (
                f"NOT the paper protocol: {self.source} ({len(x):,} windows), not the full "
                f"{FULL_SOURCE} recordings"
            )
        if paper:
            rng = np.random.RandomState(self.resample_seed)
            train = train[rng.choice(len(train), len(train))]
            test = test[rng.choice(len(test), len(test))]
            notes["resample"] = (
                "train and test resampled with replacement as the reference does, but from "
                f"RandomState({self.resample_seed}) where the reference draws unseeded"
            )
        dt = np.diff(bins, axis=1, prepend=bins[:, :1]) * self.tau
        splits = {
            name: SequenceData(
                x=torch.tensor(x[index]),
                dt=torch.tensor(dt[index], dtype=torch.float32),
                mask=torch.ones(len(index), WINDOW, dtype=torch.bool),
                y=torch.tensor(y[index]),
            )
            for name, index in (("train", train), ("test", test))
        }
        io = SequenceIO(2 * VALUES, PAPER_OUTPUTS if paper else N_CLASSES, values_with_mask=True)
        task = Task(
            "person_activity",
            io,
            per_step=True,
            metric=self.metric,
            splits=splits,
            notes=notes,
        )
        task.limit_train(self.train_limit)
        return task

    def folder(self, data: DataConfig) -> Path:
        """The dataset folder; without the full recordings the error names the sample."""
        try:
            return dataset_dir(self.source, [FILE], data)
        except DataError as error:
            if self.source != FULL_SOURCE:
                raise
            raise DataError(
                f"{error} For a smoke run that is NOT the paper protocol, "
                f"task.source={SAMPLE_SOURCE} reads the 3-recording sample that the mirrors "
                f"hold (<mirror>/{SAMPLE_SOURCE}/{FILE})."
            ) from None


def read_readings(path: Path, paper: bool, dataset: str = FULL_SOURCE) -> dict[str, np.ndarray]:
    """One entry per reading, in file order: recording number, tag, ticks, xyz and class."""
    with reading(path, dataset):
        rows = pd.read_csv(
            path,
            header=None,
            names=list(COLUMNS),
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,  # keeps row i on line i + 1, for error messages
        )
    empty = (rows == "").to_numpy()
    blank = empty.all(axis=1)
    lines = np.flatnonzero(~blank) + 1
    rows = rows[~blank]
    if rows.empty:
        raise DataError(f"{path} holds no readings; download it again")

    def check(ok: np.ndarray, what: str) -> None:
        if not ok.all():
            line = lines[np.flatnonzero(~ok)[0]]
            raise DataError(f"{path}, line {line}: {what}. Download the file again or fix it.")

    check(~empty[~blank].any(axis=1), f"fewer than {len(COLUMNS)} fields, or an empty one")
    tag = rows["tag"].map(TAGS)
    check(tag.notna().to_numpy(), f"unknown tag (expected one of {', '.join(TAGS)})")
    check(rows["ticks"].str.fullmatch(r"\d{1,18}").to_numpy(), "ticks is not an integer")
    xyz = rows[["x", "y", "z"]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    check(~np.isnan(xyz).any(axis=1), "x, y or z is not a number")
    activity = rows["activity"].str.strip()
    check(activity.isin(CLASSES.keys()).to_numpy(), "unknown activity")
    label = activity.map(CLASSES).to_numpy(np.int64, copy=True)
    if paper:
        label[(activity == MISSPELLED).to_numpy()] = IGNORE
    sequence = rows["sequence"].to_numpy()
    return {
        "recording": np.cumsum(np.r_[True, sequence[1:] != sequence[:-1]]) - 1,
        "tag": tag.to_numpy(np.int64),
        "ticks": rows["ticks"].to_numpy().astype(np.int64),
        "xyz": xyz,
        "label": label,
    }


def bin_readings(readings: dict[str, np.ndarray], paper: bool) -> dict[str, np.ndarray]:
    """Time points of all recordings: recording, bin, values and mask ``[P, 12]``, label."""
    recording, ticks = readings["recording"], readings["ticks"]
    order = np.arange(len(ticks)) if paper else np.lexsort((ticks, recording))  # quirk 4
    recording, ticks = recording[order], ticks[order]
    tag, xyz, label = readings["tag"][order], readings["xyz"][order], readings["label"][order]

    first = ticks[np.flatnonzero(np.r_[True, np.diff(recording) != 0])][recording]
    if paper:  # float64 ticks and Python's round, halves to even
        bins = np.round((ticks.astype(np.float64) - first.astype(np.float64)) / TICKS_PER_BIN)
    else:
        bins = (ticks - first + TICKS_PER_BIN // 2) // TICKS_PER_BIN
    opens = np.r_[True, (np.diff(bins) != 0) | (np.diff(recording) != 0)]
    point = np.cumsum(opens) - 1
    n = int(point[-1]) + 1

    slot = point * len(TAGS) + tag  # (time point, tag), flattened
    size = n * len(TAGS)
    counts = np.bincount(slot, minlength=size).reshape(n, len(TAGS), 1)
    sums = np.stack([np.bincount(slot, xyz[:, i], size) for i in range(3)], axis=-1)
    sums = sums.reshape(n, len(TAGS), 3)
    values = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)  # averages
    labelled = label != IGNORE
    labels = np.full(n, N_CLASSES)
    np.minimum.at(labels, point[labelled], label[labelled])
    labels[labels == N_CLASSES] = IGNORE
    return {
        "recording": recording[opens],
        "bin": bins[opens].astype(np.int64),
        "values": values.reshape(n, VALUES),
        "mask": np.broadcast_to(counts > 0, (n, len(TAGS), 3)).reshape(n, VALUES),
        "label": labels,
    }


def window_index(recording: np.ndarray) -> np.ndarray:
    """Time-point indices ``[W, 50]`` of every window, recording by recording."""
    starts = np.flatnonzero(np.r_[True, recording[1:] != recording[:-1]])
    ends = np.r_[starts[1:], len(recording)]
    first = np.concatenate(
        [np.arange(s, e - WINDOW, STRIDE) for s, e in zip(starts, ends, strict=True)]
    )
    return first[:, None] + np.arange(WINDOW)


def forward_fill(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each unobserved entry takes the last observed value before it in its row, else 0."""
    steps = np.arange(values.shape[1])[None, :, None]
    last = np.maximum.accumulate(np.where(mask, steps, -1), axis=1)
    filled = np.take_along_axis(values, np.maximum(last, 0), axis=1)
    return np.where(last >= 0, filled, 0.0)


def make_windows(path: Path, paper: bool, dataset: str = FULL_SOURCE) -> dict[str, np.ndarray]:
    """Model inputs ``x [W,50,24]`` (float32), bins ``[W,50]`` and labels ``[W,50]``."""
    points = bin_readings(read_readings(path, paper, dataset), paper)
    index = window_index(points["recording"])
    values, mask = points["values"][index], points["mask"][index]
    x = np.concatenate([forward_fill(values, mask), mask], axis=-1).astype(np.float32)
    return {"x": x, "bins": points["bin"][index], "y": points["label"][index]}
