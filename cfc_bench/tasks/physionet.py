"""PhysioNet/CinC Challenge 2012: in-hospital mortality from the first 48 h in the ICU.

Protocol (``../shared/paper/protocols.md``; reference code ``duv_physionet.py`` and
``train_physio.py`` of the CfC repository, itself adapted from the Latent-ODE loader).

Data. ``set-<s>/<RecordID>.txt`` and ``Outcomes-<s>.txt`` for each ``s`` in
``task.sets``: ``[a]`` (4,000 records, 554 deaths) is what the reference code uses,
``[a, b]`` (8,000 records) what the paper's text describes. A record is a header
``Time,Parameter,Value`` and rows ``HH:MM,Name,Value``; the ``RecordID`` row is not a
feature, the static descriptors Age, Gender, Height, ICUType, Weight at 00:00 are.
Label: ``In-hospital_death``.

Binning and parsing: :mod:`cfc_bench.tasks.physionet_records`.

Inputs (82 = 41 values + 41 mask). Values are normalised per feature to
``(v - lo) / hi`` (float32), ``lo``/``hi`` the least/greatest observed value, ``hi = 0``
replaced by 1 (a feature never observed in the statistics' records gets ``lo = 0,
hi = 1``, a guard the reference lacks). Each value is carried forward along time until
the feature is read again (the reference model does this inside its forward pass), and
is 0 before the feature's first reading. The mask half is the observed mask of that
step, not carried forward. Steps after the last one are padding: ``mask`` False, inputs
and elapsed time 0. Metric ROC AUC of the last valid step's class-1 probability; the
class weights of the cross-entropy come from ``trainer.class_weights``.

Split: ``train_test_split(ids, train_size=0.8, random_state=42, shuffle=True)`` over the
record IDs in ascending order, under both protocols (3,200 / 800 for set-a; 121 deaths among
the 800). The reference lists the records in ``os.listdir`` order, which depends on the file
system, so its 800 test patients are another draw from the same records. With ~120 deaths the test
AUC's sampling error is about ±0.024 (Hanley & McNeil 1982, at AUC 0.82), ten times the
seed spread the paper reports on its one split: compare AUCs across splits with that in mind.
``task.split_seed`` (default 42, the reference's) draws another split of the same records,
to measure how far the test AUC moves from one draw to the next.

Quirks (``protocol=paper`` reproduces the reference, ``protocol=default`` corrects):

1. Missing descriptors: −1 means "not recorded" for the descriptors at 00:00 (Gender 3,
   Height 1,894, Weight 326 rows in set-a). Paper: kept as the value −1 (so, e.g., the
   Height minimum is −1). Default: such rows are dropped before averaging (mask 0).
2. Normalisation statistics: paper: over all records, test included. Default: over the
   training records only (after the validation split below).
3. Time input. The reference collation writes, for a record with step times
   ``t_0 = 0, t_1, ..., t_{L-1}``, ``c_0 = 0`` and ``c_k = t_0 - t_{k-1} = -t_{k-1}``
   (``tt[:1] - tt[:-1]``, meant as ``tt[1:] - tt[:-1]``): negated time stamps shifted one
   step late. The training script then takes differences, ``dt_0 = 0`` and
   ``dt_k = c_k - c_{k-1}``, so the model sees

       paper:   dt_0 = dt_1 = 0,  dt_k = -(t_{k-1} - t_{k-2})  for 2 <= k < L,

   the previous step's gap, negated (computed in float32 as the reference does; at the
   first padding step the reference has ``+t_{L-2}``, which no model reads, here 0).
   Default: the true gap, ``dt_0 = t_0`` (time since admission, 0 for every official
   record) and ``dt_k = t_k - t_{k-1}``, in hours.
4. Validation: the reference has none and tests its last epoch's weights (paper). Default
   carves 20 % of the training records as validation with
   ``train_test_split(train, train_size=0.8, random_state=11, shuffle=True)``, as mTAN
   does on the same data (2,560 / 640 / 800 for set-a), so that model selection never
   sees the test set; the test set is the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from cfc_bench.data.cache import cached
from cfc_bench.data.store import dataset_dir, raw_identity
from cfc_bench.metrics import AUC, AUPRC, Metric
from cfc_bench.models.base import SequenceIO
from cfc_bench.ranges import ranged
from cfc_bench.tasks.base import DataConfig, Protocol, SequenceData, Task, TaskConfig
from cfc_bench.tasks.physionet_records import (
    CACHE_FORMAT,
    DATASET,
    N_FEATURES,
    Records,
    read_records,
)

VAL_SPLIT_SEED = 11


class PhysioSet(Enum):
    """The labelled sets of the challenge."""

    a = "a"
    b = "b"


@dataclass
class PhysioNetConfig(TaskConfig):
    name: str = "physionet"
    extra_metrics: ClassVar[tuple[Metric, ...]] = (AUPRC,)  # the field reports AUROC with it
    metric: ClassVar[Metric] = AUC
    sets: list[PhysioSet] = field(default_factory=lambda: [PhysioSet.a])
    bin_hours: float = ranged(0.016, gt=0)
    split_seed: int = 42  # random_state of the train/test split; 42 as the reference

    def has_validation(self) -> bool:
        return Protocol(self.protocol) is not Protocol.paper  # quirk 4

    def build(self, data: DataConfig) -> Task:
        protocol = Protocol(self.protocol)
        paper = protocol is Protocol.paper
        records = self.load(data, drop_missing=not paper)
        everyone = np.arange(len(records.ids))
        train, test = train_test_split(
            everyone, train_size=0.8, random_state=self.split_seed, shuffle=True
        )
        index = {"train": train, "test": test}
        if not paper:
            train, val = train_test_split(
                train, train_size=0.8, random_state=VAL_SPLIT_SEED, shuffle=True
            )
            index = {"train": train, "val": val, "test": test}
        lo, hi = feature_range(records, everyone if paper else train)
        splits = {
            name: to_sequences(records, rows, lo, hi, protocol) for name, rows in index.items()
        }
        task = Task(
            "physionet",
            SequenceIO(2 * N_FEATURES, 2, values_with_mask=True),
            per_step=False,
            metric=self.metric,
            extra_metrics=self.extra_metrics,
            splits=splits,
            notes={
                "records": f"{len(everyone)} from set-{'/'.join(self.set_names())}",
                "missing_descriptors": "kept as -1"
                if paper
                else f"-1 treated as missing ({records.dropped} rows)",
                "normalisation": "min/max over all records, test included"
                if paper
                else "min/max over the training split",
                "time_input": "reference quirk: previous step's gap negated"
                if paper
                else "hours since the previous step",
            },
        )
        task.limit_train(self.train_limit)
        return task

    def set_names(self) -> list[str]:
        names = [PhysioSet(s).value for s in self.sets]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"task.sets must list a and/or b once each; got {names}")
        return sorted(names)

    def load(self, data: DataConfig, drop_missing: bool) -> Records:
        """The binned records of the configured sets, from the cache when it has them."""
        sets = self.set_names()
        required = [p for s in sets for p in (f"set-{s}", f"Outcomes-{s}.txt")]
        folder = dataset_dir(DATASET, required, data)
        params = {
            "sets": sets,
            "bin_hours": self.bin_hours,
            "missing_descriptors": "drop" if drop_missing else "keep",
            "format": CACHE_FORMAT,
            "raw": raw_identity(DATASET, folder, required, data),
        }
        arrays = cached(
            DATASET,
            params,
            lambda: read_records(folder, sets, self.bin_hours, drop_missing).to_dict(),
            data,
        )
        return Records(**arrays)


def feature_range(records: Records, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ``lo`` (minimum) and ``hi`` (maximum, 0 -> 1) over the records ``rows``;
    ``lo = 0, hi = 1`` for a feature they never observe."""
    chosen = np.zeros(len(records.ids), dtype=bool)
    chosen[rows] = True
    keep = chosen[records.step_record()[records.obs_step]]
    by_feature = pd.Series(records.obs_value[keep]).groupby(records.obs_feature[keep])
    seen = by_feature.min()
    lo = np.zeros(N_FEATURES, dtype=np.float32)
    hi = np.ones(N_FEATURES, dtype=np.float32)
    lo[seen.index] = seen.to_numpy()
    hi[seen.index] = by_feature.max().to_numpy()
    hi[hi == 0] = 1
    return lo, hi


def to_sequences(
    records: Records, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, protocol: Protocol
) -> SequenceData:
    """Padded model inputs of the records ``rows`` (in that order), see the module notes."""
    n, lengths = len(rows), records.lengths[rows]
    steps = int(lengths.max())
    valid = np.arange(steps)[None, :] < lengths[:, None]
    split_row = np.full(len(records.ids), -1)
    split_row[rows] = np.arange(n)
    step_row = split_row[records.step_record()]
    step_local = np.arange(len(step_row)) - np.repeat(records.step_start, records.lengths)

    hours = np.zeros((n, steps), dtype=np.float32)
    in_split = step_row >= 0
    hours[step_row[in_split], step_local[in_split]] = records.step_hours[in_split]

    x = np.zeros((n, steps, 2 * N_FEATURES), dtype=np.float32)
    values, observed = x[..., :N_FEATURES], x[..., N_FEATURES:]
    obs_row = step_row[records.obs_step]
    keep = obs_row >= 0
    r, s, f = obs_row[keep], step_local[records.obs_step[keep]], records.obs_feature[keep]
    values[r, s, f] = (records.obs_value[keep] - lo[f]) / hi[f]
    observed[r, s, f] = 1
    # Forward fill, one step at a time over all records (values start at 0).
    for t in range(1, steps):
        carry = (observed[:, t] == 0) & valid[:, t, None]
        np.copyto(values[:, t], values[:, t - 1], where=carry)
    return SequenceData(
        x=torch.from_numpy(x),
        dt=torch.from_numpy(elapsed(hours, valid, protocol)),
        mask=torch.from_numpy(valid),
        y=torch.from_numpy(records.labels[rows]),
    )


def elapsed(hours: np.ndarray, valid: np.ndarray, protocol: Protocol) -> np.ndarray:
    """The time input ``[N,T]`` from step time stamps ``hours`` (float32, 0 on padding)."""
    dt = np.zeros_like(hours)
    if protocol is Protocol.paper:
        stamps = np.zeros_like(hours)
        stamps[:, 1:] = hours[:, :1] - hours[:, :-1]  # reference collation: tt[:1] - tt[:-1]
        stamps[~valid] = 0
        dt[:, 1:] = stamps[:, 1:] - stamps[:, :-1]  # reference learner: differences of those
    else:
        dt[:, 0] = hours[:, 0]
        dt[:, 1:] = hours[:, 1:] - hours[:, :-1]
    dt[~valid] = 0
    return dt
