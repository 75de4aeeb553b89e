"""Gathering runs: every ``metrics.json`` below the ``--runs`` folders is one run.

A run's row holds its ``metrics.json``, its test score (``test``: ``test/<metric>``), the
resolved ``config.yaml`` beside it (None without one), its sweep (the nearest folder up to
the runs root that holds Hydra's ``multirun.yaml``; a single run is its own sweep) and
whether it belongs to a timing sweep (``<runs>/timing/<task>``, ``make retime``).

Extra metrics. A task may record metrics beside its own (``extra_metrics``: PhysioNet's
AUPRC); the tables show a column for each metric that the task's schema declares
(``TaskConfig.extra_metrics``) or that its runs list. A run made before a metric was recorded
has no ``test/<name>``: where its ``test_outputs.npz`` exists the value is computed from it
with the registry's score function (:mod:`cfc_bench.metrics`), otherwise it stays empty (NaN).

Duplicates. Two runs of one row (model, preset, budget, training-set size) with the same
seed are one seed run twice: the one that finished last is used (then the last path), the
others are ignored and listed, so that ``n`` counts distinct seeds.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from omegaconf import OmegaConf

from cfc_bench.metrics import METRICS, Metric, lookup

REQUIRED = ("task", "model", "metric", "seed", "time/epoch_s", "device_name", "train_size")
SWEEP_MARKER = "multirun.yaml"  # Hydra writes it at the top of every sweep folder
# <runs>/timing/<task>: every preset trained for a few epochs back to back (`make retime`),
# the one place where all models of a task are timed within minutes of each other
TIMING_FOLDER = "timing"
OUTPUTS_FILE = "test_outputs.npz"  # the trainer's record of test outputs, targets and mask
# The runs of one table row: a seed may count once in each.
ROW_KEYS = ["model", "experiment", "budget", "train_size"]


@dataclass
class Duplicate:
    """Runs of one row and seed: ``used`` counts, ``ignored`` do not."""

    task: str
    model: str
    experiment: str
    seed: Any
    used: str  # path of the metrics.json used
    ignored: list[str] = field(default_factory=list)

    def describe(self) -> str:
        run = f"{self.model} ({self.experiment}) seed {self.seed}"
        return f"{run}: used {self.used}; ignored {', '.join(self.ignored)}"


@dataclass
class Gathered:
    runs: pd.DataFrame  # one row per metrics.json
    failed: pd.DataFrame  # one row per failed.json
    skipped: list[tuple[Path, str]]  # unreadable files and why


def _read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _sweep(run_dir: Path, root: Path) -> str:
    """The sweep folder a run belongs to: the nearest folder up to ``root`` with multirun.yaml."""
    for folder in (run_dir, *run_dir.parents):
        if (folder / SWEEP_MARKER).exists():
            return str(folder)
        if folder == root:
            break
    return str(run_dir)


def declared_extra_metrics(task: str) -> tuple[Metric, ...]:
    """The extra metrics a task's schema declares (none for a task this package lacks)."""
    from cfc_bench.config import task_schemas

    schema = task_schemas().get(task)
    return tuple(getattr(schema, "extra_metrics", ())) if schema is not None else ()


def extra_metrics(task: str, runs: pd.DataFrame) -> tuple[Metric, ...]:
    """The task's declared extra metrics, then those its runs list that it does not declare."""
    names = [m.name for m in declared_extra_metrics(task)]
    listed = runs["extra_metrics"] if "extra_metrics" in runs else []
    for value in listed:
        if isinstance(value, list):  # a name this package does not declare has no column
            names += [n for n in value if n not in names and n in METRICS]
    return tuple(lookup(n) for n in names)


def score_from_outputs(path: Path, metric: Metric) -> float:
    """``metric`` scored on a run's recorded test outputs (``test_outputs.npz``)."""
    with np.load(path) as arrays:
        out, y, mask = (torch.from_numpy(arrays[k]) for k in ("out", "y", "mask"))
    return float(metric.score(out, y, mask))


def fill_extra_scores(
    runs: pd.DataFrame, metrics: Iterable[Metric]
) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
    """``runs`` with ``test/<name>`` for each metric: recorded, computed from the run's
    ``test_outputs.npz`` where it was not recorded, else NaN; and the unreadable outputs."""
    runs = runs.copy()
    unreadable = []
    for metric in metrics:
        key = f"test/{metric.name}"
        recorded = runs[key] if key in runs else pd.Series(math.nan, runs.index)
        values = []
        for path, value in zip(runs["path"], recorded, strict=True):
            outputs = Path(path).parent / OUTPUTS_FILE
            if (value is None or pd.isna(value)) and outputs.exists():
                try:
                    value = score_from_outputs(outputs, metric)
                except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
                    unreadable.append((outputs, f"{key} not computed: {err}"))
            values.append(math.nan if value is None else float(value))
        runs[key] = values
    return runs, unreadable


def gather(roots: Sequence[Path]) -> Gathered:
    rows, failed, skipped = [], [], []
    for root, path in ((r, p) for r in roots for p in sorted(r.rglob("metrics.json"))):
        try:
            data = _read(path)
            missing = [k for k in REQUIRED if k not in data]
            if "metric" in data and data["metric"] not in METRICS:
                raise ValueError(f"unknown metric {data['metric']!r}")
            test_key = f"test/{data.get('metric')}"
            if test_key not in data:
                missing.append(test_key)
            if missing:
                raise ValueError(f"missing keys {missing}")
            value = data[test_key]
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"{test_key} is {value!r}, not a number")
            config = path.parent / "config.yaml"
            rows.append(
                {
                    **data,
                    "test": float(value),
                    "path": str(path),
                    "sweep": _sweep(path.parent, root),
                    "timing": path.relative_to(root).parts[0] == TIMING_FOLDER,
                    "config": OmegaConf.load(config) if config.exists() else None,
                }
            )
        except (OSError, ValueError, yaml.YAMLError) as err:  # JSONDecodeError: a ValueError
            skipped.append((path, str(err)))
    for path in (p for r in roots for p in sorted(r.rglob("failed.json"))):
        try:
            data = _read(path)
            failed.append({**data, "path": str(path.parent)})
        except (OSError, ValueError) as err:
            skipped.append((path, str(err)))
    runs = pd.DataFrame(rows)
    if len(runs):
        experiment = runs["experiment"] if "experiment" in runs else pd.Series(None, runs.index)
        runs["experiment"] = experiment.fillna("-")
    return Gathered(runs, pd.DataFrame(failed), skipped)


def distinct_seeds(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[Duplicate]]:
    """One run per row and seed (the last finished), and the duplicates that were dropped.

    ``runs`` needs the ``budget`` column (:mod:`cfc_bench.report.presets`).
    """
    if not len(runs):
        return runs, []
    finished = runs["finished_at"] if "finished_at" in runs else pd.Series("", runs.index)
    order = runs.assign(_finished=finished.fillna("").astype(str)).sort_values(
        ["_finished", "path"]
    )
    keys = ["task", *ROW_KEYS, "seed"]
    keep, duplicates = [], []
    for key, group in order.groupby(keys, sort=True, dropna=False):
        keep.append(group.index[-1])
        if len(group) > 1:
            record = dict(zip(keys, key, strict=True))
            duplicates.append(
                Duplicate(
                    record["task"],
                    record["model"],
                    record["experiment"],
                    record["seed"],
                    used=group["path"].iloc[-1],
                    ignored=list(group["path"].iloc[:-1]),
                )
            )
    return runs.loc[sorted(keep)], duplicates
