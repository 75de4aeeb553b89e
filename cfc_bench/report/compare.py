"""Summaries: each task's runs as rows beside the paper's numbers.

Runs are grouped by model, preset (``experiment``), budget and training-set size and
summarised as mean ± sample standard deviation (ddof 1) over distinct seeds (n), whatever
machine each seed ran on (the row names them all); times are divided only within one machine.

Units. Each metric is shown as the registry declares it (:mod:`cfc_bench.metrics`: accuracy in
percent for every task; the paper gives XOR and ET-sMNIST in percent and human activity as a
fraction, ``results/paper/reported.csv`` says which). "ours - paper" is in those units.

Speed-up. A run's time per epoch is divided by the mean time per epoch of the CfC runs of the
same sweep (the folder holding Hydra's ``multirun.yaml``), on the same machine, thread count and
training-set size; a row's speed-up is the mean over its runs that have such CfC runs. A run
trained in pieces on more than one machine (``device_names``) has none: its time per epoch is
no one machine's. Runs under ``<runs>/timing/<task>`` (``make retime``) give a second speed-up,
"timing sweep", to the one row of each preset that changes no setting of it but the budget
(the row as preset where there is one; where every run of a paper row's model changed a setting,
a row "not run as preset" of its own); those runs are not rows. The paper's speed-up is its
minutes per epoch over CfC's, figures that mix GPUs (``results/paper/README.md``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cfc_bench.bench.probe import supported
from cfc_bench.metrics import Metric, lookup
from cfc_bench.report.gather import ROW_KEYS, Duplicate, Gathered, distinct_seeds, fill_extra_scores
from cfc_bench.report.gather import extra_metrics as task_extra_metrics
from cfc_bench.report.judge import (
    REFERENCE_MODEL,
    agreement,
    judged_speedup,
    speed_claim,
)
from cfc_bench.report.presets import label_runs

# reported.csv's metric column: our metric and the factor to the shown units
REPORTED_UNITS = {
    "accuracy_pct": ("accuracy", 1.0),
    "accuracy": ("accuracy", 100.0),
    "auc": ("auc", 1.0),
    "mse": ("mse", 1.0),
}
REPORTED_COLUMNS = [
    "task",
    "model",
    "our_model",
    "metric",
    "mean",
    "std",
    "minutes_per_epoch",
    "source",
]
PAIRED_KEYS = ["model", "experiment", "train_size"]
PAIRED_COLUMNS = ["paired_speedup", "paired_machine_ratio", "paired_n"]
# The status of a table row: "ran", or one of these for a paper row without a run as preset.
NOT_RUN, FAILED, NOT_RUN_AS_PRESET = "not run", "failed", "not run as preset"


@dataclass
class TaskResult:
    task: str
    metric: Metric
    extras: tuple[Metric, ...]  # the task's extra metrics, a column each
    table: pd.DataFrame  # compare()'s rows
    failed: pd.DataFrame  # the task's failed runs
    duplicates: list[Duplicate] = field(default_factory=list)


def load_reported(path: Path) -> pd.DataFrame:
    """reported.csv with ``metric`` as ours and ``mean``/``std`` in the shown units."""
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = [c for c in REPORTED_COLUMNS if c not in table]
    if missing:
        raise ValueError(f"missing columns {missing} (see results/paper/README.md)")
    unknown = sorted(set(table["metric"]) - REPORTED_UNITS.keys())
    if unknown:
        raise ValueError(f"unknown metric {unknown}; expected one of {sorted(REPORTED_UNITS)}")
    factor = table["metric"].map(lambda m: REPORTED_UNITS[m][1])
    table["mean"] = table["mean"] * factor
    table["std"] = table["std"] * factor
    table["metric"] = table["metric"].map(lambda m: REPORTED_UNITS[m][0])
    return table


def _cell(run: dict[str, Any]) -> tuple[Any, ...]:
    """Runs whose times may be divided: same sweep, machine, thread count, training size."""
    threads = run.get("threads")
    threads = None if threads is None or pd.isna(threads) else int(threads)
    return run["sweep"], run["device_name"], threads, run["train_size"]


def _spans_machines(run: dict[str, Any]) -> bool:
    names = run.get("device_names")
    return isinstance(names, list) and len(names) > 1


def _number(run: dict[str, Any], key: str) -> float:
    value = run.get(key)
    return math.nan if value is None or pd.isna(value) else float(value)


def _machine_ratio(run: dict[str, Any], refs: list[dict[str, Any]]) -> float:
    """The run's probe median over the mean of its CfC runs', where the probes' spreads support
    a difference (:func:`cfc_bench.bench.probe.supported`); NaN where they do not, or where a
    run recorded no spread (a probe of a single reading, or a run made before spreads)."""
    ratio = _number(run, "time/probe_ms") / statistics.mean(
        _number(r, "time/probe_ms") for r in refs
    )
    theirs = [_number(r, "time/probe_spread") for r in refs]
    widest = math.nan if any(map(math.isnan, theirs)) else max(theirs)
    return ratio if supported(ratio, _number(run, "time/probe_spread"), widest) else math.nan


def _speedups(runs: pd.DataFrame, per_round: bool = False) -> pd.DataFrame:
    """Each run's time per epoch over the mean of the CfC runs of its cell (``_cell``), and
    its machine-speed probe over theirs (:func:`_machine_ratio`). ``per_round``: a timing
    sweep's rounds (its seeds, `make retime RETIME_SEEDS=N`) are cells of their own, so that
    each round's times are divided by that round's CfC."""

    def cell(run: dict[str, Any]) -> tuple[Any, ...]:
        return (*_cell(run), run["seed"]) if per_round else _cell(run)

    records = runs.to_dict("records")
    cfc: dict[tuple, dict[tuple, list[dict]]] = {}
    for run in records:
        if run["model"] == REFERENCE_MODEL:
            configs = cfc.setdefault(cell(run), {})
            configs.setdefault((run["experiment"], run["budget"]), []).append(run)
    # several CfC configurations in one cell: the one with the most runs
    reference = {cell: max(c.values(), key=len) for cell, c in cfc.items()}
    ratios, machine = [], []
    for run in records:
        refs = [] if _spans_machines(run) else reference.get(cell(run), [])
        mean = (lambda values: sum(values) / len(values)) if refs else (lambda values: math.nan)
        ratios.append(run["time/epoch_s"] / mean([r["time/epoch_s"] for r in refs]))
        machine.append(_machine_ratio(run, refs) if refs else math.nan)
    return pd.DataFrame({"speedup": ratios, "machine": machine}, index=runs.index)


def _mean_std_n(values: pd.Series, prefix: str) -> dict[str, Any]:
    values = pd.to_numeric(values, errors="coerce")
    return {
        f"{prefix}_mean": values.mean(),
        f"{prefix}_std": values.std(ddof=1) if values.count() > 1 else math.nan,
        f"{prefix}_n": int(values.count()),
    }


def summarise(runs: pd.DataFrame, metric: Metric, extras: tuple[Metric, ...]) -> pd.DataFrame:
    """One row per (model, experiment, budget, training size) of one task's runs."""
    runs = runs.join(_speedups(runs))
    best_key = f"test_at_best_val/{metric.name}"  # recorded by runs that test the last epoch
    out = []
    for key, group in runs.groupby(ROW_KEYS, sort=True, dropna=False):
        values = group["test"] * metric.scale
        at_best = group[best_key] if best_key in group else pd.Series(dtype=float)
        out.append(
            {
                **dict(zip(ROW_KEYS, key, strict=True)),
                "comparable": bool(group["comparable"].all()),
                "changed": bool(group["changed"].any()),
                "n": len(group),
                "device_name": "; ".join(sorted(group["device_name"].unique())),
                "scores": tuple(values),
                "mean": values.mean(),
                "std": values.std(ddof=1) if len(group) > 1 else math.nan,
                "epoch_s": group["time/epoch_s"].mean(),
                **_mean_std_n(metric.scale * pd.to_numeric(at_best, errors="coerce"), "best_val"),
                **{
                    k: v
                    for m in extras
                    for k, v in _mean_std_n(m.scale * group[f"test/{m.name}"], m.name).items()
                },
                "cfc_speedup": group["speedup"].mean(),  # NaN when no run has a CfC beside it
                # the probe's time over CfC's: how much slower the machine ran for these runs
                "machine_ratio": group["machine"].mean(),
                "n_params": group["n_params"].iloc[0] if "n_params" in group else math.nan,
                "epochs": group["epochs"].max() if "epochs" in group else math.nan,
            }
        )
    return pd.DataFrame(out)


def paired_speedups(timing: pd.DataFrame) -> pd.DataFrame:
    """The speed-ups measured in the timing sweeps, per model, preset and training size
    (each run's divided within its machine), from the runs whose settings are their preset's
    but for the budget."""
    timing = timing[~timing["changed"]] if len(timing) else timing
    if not len(timing):
        return pd.DataFrame(columns=[*PAIRED_KEYS, *PAIRED_COLUMNS])
    timing = timing.join(_speedups(timing, per_round=True))
    grouped = timing.groupby(PAIRED_KEYS, dropna=False)
    return grouped.agg(
        paired_speedup=("speedup", "mean"),
        paired_machine_ratio=("machine", "mean"),
        paired_n=("speedup", "size"),
    ).reset_index()


def with_paired(summary: pd.DataFrame, paired: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with the timing sweep's speed-up of each preset on one row: the first of
    the rows that change no setting but the budget, as :func:`compare` orders them (the row
    as preset first, then the one with most seeds)."""
    if not len(paired):  # no timing sweep (merging its empty, untyped columns would fail)
        return summary.assign(**dict.fromkeys(PAIRED_COLUMNS, math.nan))
    out = summary.merge(paired, on=PAIRED_KEYS, how="left")
    order = out[~out["changed"]].sort_values(["comparable", "n"], ascending=False, kind="stable")
    later = order.index[order.duplicated(PAIRED_KEYS)]
    out.loc[out["changed"] | out.index.isin(later), PAIRED_COLUMNS] = math.nan
    return out


def timing_only(paired: pd.DataFrame, model: str | None, preset: str, paper_speedup: float) -> dict:
    """A paper row whose model has no full run but was timed in a timing sweep (``make
    retime``): that preset's timing-sweep speed-up, and its speed claim judged on it."""
    if model is None or not len(paired):
        return {}
    hit = paired[(paired["model"] == model) & (paired["experiment"] == preset)]
    if len(hit) != 1:  # none, or several training sizes: no one number to show
        return {}
    timed = hit.iloc[0]
    claim = None
    if model != REFERENCE_MODEL:
        claim = speed_claim(timed["paired_speedup"], paper_speedup, timed["paired_machine_ratio"])
    return {**{c: timed[c] for c in PAIRED_COLUMNS}, "speed_claim": claim}


def compare(
    summary: pd.DataFrame,
    reported: pd.DataFrame,
    failed: set[str],
    paired: pd.DataFrame | None = None,
    task: str = "",
) -> pd.DataFrame:
    """Our rows beside the paper's, in the paper's row order, then models it does not have.

    A paper row with no run of its model becomes a "not run" (or "failed") row, with the
    timing sweep's speed-up of its preset ``<task>_<model>`` where ``paired`` has one; a paper
    row whose runs all changed a setting of the preset gets a "not run as preset" row beside
    them where that preset was timed, so that its speed claim is judged on the preset.
    """
    cfc_row = reported[reported["our_model"] == REFERENCE_MODEL]
    cfc_minutes = float(cfc_row["minutes_per_epoch"].iloc[0]) if len(cfc_row) else math.nan
    rows = []
    paper_rows = [r for _, r in reported.iterrows()]
    order = [r["our_model"] if isinstance(r["our_model"], str) else None for r in paper_rows]
    extra = sorted(set(summary["model"]) - set(order)) if len(summary) else []
    for paper, model in [*zip(paper_rows, order, strict=True), *((None, m) for m in extra)]:
        paper_model = paper["model"] if paper is not None else None
        p_mean = float(paper["mean"]) if paper is not None else math.nan
        p_std = float(paper["std"]) if paper is not None else math.nan
        p_speed = paper["minutes_per_epoch"] / cfc_minutes if paper is not None else math.nan
        base = {
            "model": model or paper_model,
            "paper_model": paper_model,
            "paper_mean": p_mean,
            "paper_std": p_std,
            "paper_speedup": p_speed,
            "paper_source": paper["source"] if paper is not None else None,
        }
        ours = summary[summary["model"] == model] if model is not None and len(summary) else []
        timed = timing_only(
            paired if paired is not None else pd.DataFrame(), model, f"{task}_{model}", p_speed
        )
        if not len(ours):
            status = FAILED if model in failed else NOT_RUN
            rows.append({**base, "status": status, "comparable": False, "n": 0, **timed})
            continue
        for _, row in ours.sort_values(["comparable", "n"], ascending=False).iterrows():
            tolerance, seed_tolerance, agrees = agreement(row["scores"], p_mean, p_std)
            comparable = bool(row["comparable"])
            speedup, machine, _ = judged_speedup(row)
            rows.append(
                {
                    **base,
                    **row.to_dict(),
                    "status": "ran",
                    "diff": row["mean"] - p_mean,
                    "tolerance": tolerance,
                    "seed_tolerance": seed_tolerance,
                    "agrees": agrees if comparable else None,
                    "speed_claim": speed_claim(speedup, p_speed, machine)
                    if not row["changed"] and model != REFERENCE_MODEL
                    else None,
                }
            )
        if paper is not None and timed and ours["changed"].all():
            # only runs of other settings: the preset's own timing-sweep speed-up on a row
            rows.append({**base, "status": NOT_RUN_AS_PRESET, "comparable": False, "n": 0, **timed})
    return pd.DataFrame(rows)


def task_results(gathered: Gathered, reported: pd.DataFrame) -> dict[str, TaskResult]:
    """Each task's table: its runs labelled with their budget, one run per row and seed, the
    timing sweeps' speed-ups, beside the paper's rows. Recorded outputs that cannot be read
    are added to ``gathered.skipped``."""
    runs, failed = gathered.runs, gathered.failed
    if not len(runs):
        return {}
    runs = label_runs(runs)
    # The timing sweeps' runs give speed-ups only: their few epochs score nothing.
    paired = paired_speedups(runs[runs["timing"]])
    scored, duplicates = distinct_seeds(runs[~runs["timing"]])
    results = {}
    for task in sorted(scored["task"].unique()):
        task_runs = scored[scored["task"] == task]
        metric = lookup(task_runs["metric"].iloc[0])
        extras = task_extra_metrics(task, task_runs)
        task_runs, unreadable = fill_extra_scores(task_runs, extras)
        gathered.skipped.extend(unreadable)
        paper = reported[reported["task"] == task] if len(reported) else reported
        task_failed = failed[failed["task"] == task] if "task" in failed else failed
        summary = with_paired(summarise(task_runs, metric, extras), paired)
        table = compare(summary, paper, set(task_failed.get("model", [])), paired, task)
        mine = [d for d in duplicates if d.task == task]
        results[task] = TaskResult(task, metric, extras, table, task_failed, mine)
    return results
