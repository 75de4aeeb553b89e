"""PhysioNet 2012 record files (``set-<s>/<RecordID>.txt``, ``Outcomes-<s>.txt``) parsed,
validated and binned into :class:`Records`, the sparse form that
:mod:`cfc_bench.tasks.physionet` caches and turns into sequences.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cfc_bench.data.store import reading
from cfc_bench.errors import DataError

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
FIX = (
    f"check the dataset with `cfc-bench data verify {DATASET}` and fetch it again with "
    f"`cfc-bench data download {DATASET}`"
)
CACHE_FORMAT = 1  # bump when the cached records' layout or meaning changes


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
