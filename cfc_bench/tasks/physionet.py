"""PhysioNet/CinC Challenge 2012: in-hospital mortality from the first 48 h in the ICU.

Protocol (``../shared/paper/protocols.md``; reference code ``duv_physionet.py`` and
``train_physio.py`` of the CfC repository, itself adapted from the Latent-ODE loader).

Data. ``set-<s>/<RecordID>.txt`` and ``Outcomes-<s>.txt`` for each ``s`` in
``task.sets``: ``[a]`` (4,000 records, 554 deaths) is what the reference code uses,
``[a, b]`` (8,000 records) what the paper's text describes. A record is a header
``Time,Parameter,Value`` and rows ``HH:MM,Name,Value``; the ``RecordID`` row is not a
feature, the static descriptors Age, Gender, Height, ICUType, Weight at 00:00 are.
Label: ``In-hospital_death``.

Binning. Time in hours ``t = HH + MM/60`` (float64) goes to bin ``k = round(t / q)``
with ``q = bin_hours = 0.016`` and Python's round-half-to-even (``numpy.rint`` does the
same), so 00:12 (12.5 bins) goes to bin 12 and 01:00 (62.5) to bin 62; the step's time
stamp is ``float32(k * q)``. With whole minutes no two distinct minutes share a bin
(they are 1.04 bins apart), so a bin holds one minute's readings. Each record starts
with a step at bin 0 (admission), as the reference's ``tt = [0.0]`` does; every other
step is a bin in which the record has a row (the ``RecordID`` row included, as in the
reference). Several readings of one feature in one bin (at most 3 in the official data)
are averaged as the reference does, by a running float32 mean in file order,
``m <- (m * n + v) / (n + 1)``; binned values, masks and time stamps are bit-identical to
the reference loader's on all 4,000 set-a records. The 41-wide observed mask marks the
features read in a bin.

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

Not changed by either protocol: the official data's implausible readings (Temp −17.8,
Weight 0 at later times) are kept as values. The official files contain no malformed
row (all 3.3 M rows of set-a and set-b have three fields, a ``HH:MM`` time in order, one
of the 41 names or ``RecordID``, and a number), so anything else is an error naming the
file and line, and nothing is cached until every record parsed.

Parsing is one ``pandas.read_csv`` call over all files. The binned records (sparse) are
cached under the data root, keyed by the raw files' identity, the sets, ``bin_hours``, the
−1 rule and a format version; normalisation, forward fill and splits are rebuilt from them
on every load.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from cfc_bench.data.cache import cached
from cfc_bench.data.store import dataset_dir, raw_identity, reading
from cfc_bench.errors import DataError
from cfc_bench.metrics import AUC, AUPRC, Metric
from cfc_bench.models.base import SequenceIO
from cfc_bench.ranges import ranged
from cfc_bench.tasks.base import DataConfig, Protocol, SequenceData, Task, TaskConfig

log = logging.getLogger(__name__)

DATASET = "physionet2012"
FEATURES = (
    "Age", "Gender", "Height", "ICUType", "Weight", "Albumin", "ALP", "ALT", "AST",
    "Bilirubin", "BUN", "Cholesterol", "Creatinine", "DiasABP", "FiO2", "GCS", "Glucose",
    "HCO3", "HCT", "HR", "K", "Lactate", "Mg", "MAP", "MechVent", "Na", "NIDiasABP",
    "NIMAP", "NISysABP", "PaCO2", "PaO2", "pH", "Platelets", "RespRate", "SaO2", "SysABP",
    "Temp", "TroponinI", "TroponinT", "Urine", "WBC",
)  # fmt: skip
N_FEATURES = len(FEATURES)
DESCRIPTORS = FEATURES[:5]  # recorded once at 00:00; -1 = not recorded
RECORD_ID = N_FEATURES  # parameter code of the RecordID row (not a feature)
HEADER = b"Time,Parameter,Value\n"
LABEL = "In-hospital_death"
VAL_SPLIT_SEED = 11
FIX = (
    f"check the dataset with `cfc-bench data verify {DATASET}` and fetch it again with "
    f"`cfc-bench data download {DATASET}`"
)
CACHE_FORMAT = 1  # bump when the cached records' layout or meaning changes


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


@dataclass
class Records:
    """Binned records, sorted by ID; steps and observations flattened over all records."""

    ids: np.ndarray  # [N] RecordID
    labels: np.ndarray  # [N] in-hospital death (0/1)
    lengths: np.ndarray  # [N] steps per record
    step_hours: np.ndarray  # [S] float32 time stamp of every step, record after record
    obs_step: np.ndarray  # [M] index into step_hours of each observed (step, feature)
    obs_feature: np.ndarray  # [M] feature index 0..40
    obs_value: np.ndarray  # [M] float32 mean of the readings in that bin
    dropped: int = 0  # -1 descriptor rows treated as missing

    def to_dict(self) -> dict[str, np.ndarray | int]:
        return dict(vars(self))

    @property
    def step_start(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]])

    def step_record(self) -> np.ndarray:
        """The record (index into ``ids``) of every step."""
        return np.repeat(np.arange(len(self.ids)), self.lengths)


def read_records(folder: Path, sets: list[str], bin_hours: float, drop_missing: bool) -> Records:
    """Parse, validate and bin every record of ``sets`` under ``folder``."""
    started = time.perf_counter()
    files = record_files(folder, sets)
    ids = np.array([int(f.stem) for f in files], dtype=np.int64)
    labels = read_labels(folder, sets, ids)
    rows, row_file, file_start = read_rows(files)

    def error(bad: np.ndarray, what: str) -> DataError:
        first = int(np.flatnonzero(bad)[0])
        where = f"{files[row_file[first]]}:{first - file_start[row_file[first]] + 2}"
        more = f" ({int(bad.sum())} such lines in all)" if bad.sum() > 1 else ""
        return DataError(
            f"{where}: {what}{more}. Rows must read HH:MM,Parameter,Value in time order with "
            f"one of the 41 PhysioNet 2012 parameters or RecordID; replace the damaged file "
            f"from the official set-{'/'.join(sets)}.tar.gz"
        )

    minutes = parse_times(rows["Time"].to_numpy(), error)
    new_file = np.zeros(len(minutes), dtype=bool)
    new_file[file_start[file_start < len(minutes)]] = True
    backwards = np.zeros_like(new_file)
    backwards[1:] = (np.diff(minutes) < 0) & ~new_file[1:]
    if backwards.any():
        raise error(backwards, "time stamp earlier than the line before")
    codes, names = pd.factorize(rows["Parameter"])
    known = {name: i for i, name in enumerate(FEATURES)} | {"RecordID": RECORD_ID}
    lookup = np.array([known.get(name, -1) for name in names], dtype=np.int64)
    param = lookup[codes]
    if (param < 0).any():
        bad = param < 0
        raise error(bad, f"unknown parameter {rows['Parameter'].iloc[np.flatnonzero(bad)[0]]!r}")
    try:
        value = rows["Value"].to_numpy().astype(np.float64)  # Python float(): exact parsing
    except ValueError:
        value = pd.to_numeric(rows["Value"], errors="coerce").to_numpy()
    if not np.isfinite(value).all():
        bad = ~np.isfinite(value)
        raise error(bad, f"value {rows['Value'].iloc[np.flatnonzero(bad)[0]]!r} is not a number")

    # Bins and steps: a new step wherever the bin differs from the previous row's (the
    # first row of a record is compared with the admission bin 0).
    hours = minutes // 60 + (minutes % 60) / 60.0
    bins = np.rint(hours / bin_hours).astype(np.int64)
    previous = np.concatenate([[0], bins[:-1]])
    previous[new_file] = 0
    step_in_file = np.cumsum(bins != previous)
    step_in_file -= np.concatenate([[0], step_in_file])[file_start][row_file]
    lengths = np.ones(len(files), dtype=np.int64)
    last_row = np.append(file_start[1:], len(bins)) - 1
    has_rows = last_row >= file_start
    lengths[has_rows] = step_in_file[last_row[has_rows]] + 1
    step_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    step = step_start[row_file] + step_in_file
    step_bins = np.zeros(int(lengths.sum()), dtype=np.int64)
    step_bins[step] = bins

    keep = param != RECORD_ID
    missing = (param < len(DESCRIPTORS)) & (minutes == 0) & (value == -1)
    if drop_missing:
        keep &= ~missing
    key = step[keep] * N_FEATURES + param[keep]
    cells, cell = np.unique(key, return_inverse=True)
    log.info(
        "parsed %d PhysioNet records (%d rows) from set-%s in %.1f s",
        len(files), len(value), "/".join(sets), time.perf_counter() - started,
    )  # fmt: skip
    return Records(
        ids=ids,
        labels=labels,
        lengths=lengths,
        step_hours=(step_bins * bin_hours).astype(np.float32),
        obs_step=cells // N_FEATURES,
        obs_feature=cells % N_FEATURES,
        obs_value=running_mean(cell, value[keep], len(cells)),
        dropped=int(missing.sum()) if drop_missing else 0,
    )


def running_mean(cell: np.ndarray, value: np.ndarray, n_cells: int) -> np.ndarray:
    """Mean of the readings of each cell, updated reading by reading in file order in float32
    as the reference does, ``m <- (m * n + v) / (n + 1)`` (at most 3 readings share a cell
    in the official data, so the loop is short)."""
    order = np.argsort(cell, kind="stable")
    counts = np.bincount(cell, minlength=n_cells)
    rank = np.arange(len(cell)) - np.repeat(np.cumsum(counts) - counts, counts)
    cell, value = cell[order], value[order].astype(np.float32)
    mean = np.zeros(n_cells, dtype=np.float32)
    for n in range(int(counts.max(initial=0))):
        at = rank == n
        c, v = cell[at], value[at]
        mean[c] = (mean[c] * np.float32(n) + v) / np.float32(n + 1)
    return mean


def record_files(folder: Path, sets: list[str]) -> list[Path]:
    """Every ``set-<s>/<RecordID>.txt``, sorted by RecordID."""
    files = []
    for s in sets:
        found = sorted((folder / f"set-{s}").glob("*.txt"))
        if not found:
            raise DataError(f"{folder / f'set-{s}'} holds no <RecordID>.txt records")
        odd = [f.name for f in found if not f.stem.isdigit()]
        if odd:
            raise DataError(f"{folder / f'set-{s}'}: {odd[0]} is not named <RecordID>.txt")
        files += found
    files.sort(key=lambda f: int(f.stem))
    for a, b in zip(files, files[1:], strict=False):
        if int(a.stem) == int(b.stem):
            raise DataError(f"record {a.stem} appears twice: {a} and {b}")
    return files


def read_labels(folder: Path, sets: list[str], ids: np.ndarray) -> np.ndarray:
    """``In-hospital_death`` of every record in ``ids``, from the sets' outcome files."""
    frames = []
    for s in sets:
        path = folder / f"Outcomes-{s}.txt"
        with reading(path, DATASET):
            frame = pd.read_csv(path)
        if not {"RecordID", LABEL} <= set(frame.columns):
            raise DataError(
                f"{path}: expected columns RecordID and {LABEL}; got {list(frame)}; {FIX}"
            )
        if not frame[LABEL].isin([0, 1]).all():
            raise DataError(f"{path}: {LABEL} must be 0 or 1")
        frames.append(frame[["RecordID", LABEL]])
    outcomes = pd.concat(frames).set_index("RecordID")[LABEL]
    if outcomes.index.duplicated().any():
        raise DataError(
            f"RecordID {outcomes.index[outcomes.index.duplicated()][0]} has two outcomes"
        )
    unlabelled = np.setdiff1d(ids, outcomes.index)
    orphans = np.setdiff1d(outcomes.index, ids)
    if len(unlabelled) or len(orphans):
        raise DataError(
            f"records and outcomes of set-{'/'.join(sets)} in {folder} do not match: "
            f"{len(unlabelled)} records without an outcome (e.g. {unlabelled[:3].tolist()}), "
            f"{len(orphans)} outcomes without a record file (e.g. {orphans[:3].tolist()}); "
            "re-extract the set archives and outcome files"
        )
    return outcomes.loc[ids].to_numpy(dtype=np.int64)


def read_rows(files: list[Path]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """All data rows of ``files`` as strings, each row's file index and each file's first row."""
    bodies, counts = [], []
    for path in files:
        with reading(path, DATASET):
            text = path.read_bytes().replace(b"\r\n", b"\n")
        if not text.startswith(HEADER):
            raise DataError(f"{path}:1: expected the header {HEADER.decode().strip()!r}; {FIX}")
        body = text[len(HEADER) :]
        if body and not body.endswith(b"\n"):
            body += b"\n"
        bodies.append(body)
        counts.append(body.count(b"\n"))
    buffer = b"".join(bodies)
    counts = np.array(counts, dtype=np.int64)
    row_file = np.repeat(np.arange(len(files)), counts)
    file_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # Three fields per line, checked on the raw bytes so the error can name the line.
    chars = np.frombuffer(buffer, dtype=np.uint8)
    line_start = np.concatenate([[0], np.flatnonzero(chars == ord("\n"))[:-1] + 1])
    if len(buffer):
        commas = np.add.reduceat(chars == ord(","), line_start, dtype=np.int64)
        if (commas != 2).any():
            first = int(np.flatnonzero(commas != 2)[0])
            line = first - file_start[row_file[first]] + 2
            raise DataError(
                f"{files[row_file[first]]}:{line}: expected 3 comma-separated fields "
                f"(Time,Parameter,Value), found {commas[first] + 1}; {FIX}"
            )
    rows = pd.read_csv(
        io.BytesIO(buffer),
        header=None,
        names=["Time", "Parameter", "Value"],
        dtype=str,
        na_filter=False,
        quoting=csv.QUOTE_NONE,
        skip_blank_lines=False,
        encoding_errors="replace",  # odd bytes then fail the field checks, naming the line
    )
    return rows, row_file, file_start


def parse_times(stamps: np.ndarray, error: Callable[[np.ndarray, str], DataError]) -> np.ndarray:
    """Minutes since admission of ``HH:MM`` stamps, checked character by character."""
    chars = np.frombuffer(np.asarray(stamps, dtype="U6").tobytes(), dtype=np.uint32)
    chars = chars.reshape(len(stamps), 6).astype(np.int64)
    digits = chars[:, [0, 1, 3, 4]] - ord("0")
    minutes = 60 * (10 * digits[:, 0] + digits[:, 1]) + 10 * digits[:, 2] + digits[:, 3]
    ok = ((digits >= 0) & (digits <= 9)).all(axis=1)
    ok &= (chars[:, 2] == ord(":")) & (chars[:, 5] == 0) & (digits[:, 2] < 6)
    if not ok.all():
        raise error(~ok, f"time stamp {stamps[np.flatnonzero(~ok)[0]]!r} is not HH:MM")
    return minutes


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
