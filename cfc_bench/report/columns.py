"""Table columns, each declared once: its key, header, cell format, when it is shown, and the
numbers it stands for in the CSV. Markdown, LaTeX (the formatted cells) and CSV (the numbers,
in the shown units) are all driven by :func:`columns`.

A column whose ``header`` is None is a CSV field only (a number no cell shows, such as the
training-set size). Rows that did not run (``status`` other than "ran": "not run", "failed",
or "not run as preset" beside a model's runs of other settings) show their model, their status
in the score column, the paper's number and speed-up, the timing sweep's speed-up where
``make retime`` timed their preset, and "-" elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cfc_bench.metrics import Metric
from cfc_bench.report.judge import judged_speedup, machine_drifted, verdict


def _num(value: Any, digits: int, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def mean_std(mean: float, std: float, digits: int, n: int | None = None) -> str:
    """``mean ± std (n=N)``; the std left out where NaN, "-" where the mean is."""
    if pd.isna(mean):
        return "-"
    text = _num(mean, digits) if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return text if n is None else f"{text} (n={n})"


def ratio(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.2f}x"


def machine_drift(machine: float) -> str:
    if machine >= 1:
        return f"machine {machine:.2f}x slower than for CfC"
    return f"machine {1 / machine:.2f}x faster than for CfC"


def _speedup_cell(speedup: float, machine: float) -> str:
    """Our speed-up, and the machine's own slow-down where it was too large to ignore."""
    machine = math.nan if pd.isna(machine) else float(machine)
    if pd.isna(speedup) or not machine_drifted(machine):
        return ratio(speedup)
    return f"{ratio(float(speedup))} ({machine_drift(machine)})"


def _paired_cell(r: pd.Series, metric: Metric) -> str:
    return _speedup_cell(r.get("paired_speedup", math.nan), r.get("paired_machine_ratio", math.nan))


def _paper_speedup_cell(r: pd.Series, metric: Metric) -> str:
    return ratio(r["paper_speedup"])


def _agrees(r: pd.Series, digits: int) -> str:
    judged = verdict(r["agrees"])
    if judged is None:
        return "-"
    if judged or abs(r["diff"]) > r["tolerance"]:
        why = f"{'≤' if judged else '>'} {r['tolerance']:.{digits}f}"
    else:  # the mean is within a tolerance that the seeds' own scatter made wide
        why = f"no seed within ± {r['seed_tolerance']:.{digits}f}"
    return f"{'yes' if judged else 'no'} ({why})"


def _model(r: pd.Series, metric: Metric) -> str:
    if isinstance(r["paper_model"], str) and r["paper_model"] != r["model"]:
        return f"{r['model']} (paper: {r['paper_model']})"
    return r["model"]


def _has(key: str) -> Callable[[pd.DataFrame], bool]:
    """Shown only where some row has a value (a count above 0) of ``key``."""

    def shown(table: pd.DataFrame) -> bool:
        if key not in table:
            return False
        values = table[key]
        return bool((values.fillna(0) > 0).any() if key.endswith("_n") else values.notna().any())

    return shown


Cell = Callable[[pd.Series, Metric], str]


@dataclass(frozen=True)
class Column:
    key: str
    header: Callable[[Metric], str] | None  # None: a CSV field only
    fields: tuple[str, ...]  # its numbers in the CSV (shown units)
    cell: Cell | None = None  # the formatted cell of a row that ran
    shown: Callable[[pd.DataFrame], bool] = lambda table: True
    unrun: Cell | None = None  # the cell of a row that did not run (default "-")


def score_header(metric: Metric) -> str:
    """A test score as headers and titles name it: "test " and the metric's label and units."""
    return f"test {metric.header}"


def _fixed(text: str) -> Callable[[Metric], str]:
    return lambda metric: text


def extra_column(extra: Metric) -> Column:
    """The test score of one of the task's extra metrics (runs without it: empty)."""
    prefix = extra.name
    return Column(
        f"test/{prefix}",
        _fixed(f"ours: {score_header(extra)}"),
        (f"{prefix}_mean", f"{prefix}_std", f"{prefix}_n"),
        lambda r, m: (
            mean_std(r[f"{prefix}_mean"], r[f"{prefix}_std"], extra.digits)
            if r[f"{prefix}_n"] > 0
            else "-"
        ),
    )


def columns(extras: tuple[Metric, ...] = ()) -> list[Column]:
    """Every column of a task's table, in order; ``extras``: the task's extra metrics."""
    return [
        Column(
            "model",
            _fixed("model"),
            ("model", "paper_model", "status"),
            _model,
            unrun=_model,
        ),
        Column("preset", _fixed("preset"), ("experiment",), lambda r, m: r["experiment"]),
        Column(
            "ours",
            lambda m: f"ours: {score_header(m)}",
            ("n", "mean", "std"),
            lambda r, m: mean_std(r["mean"], r["std"], m.digits, r["n"]),
            unrun=lambda r, m: r["status"],
        ),
        Column(
            "paper",
            _fixed("paper"),
            ("paper_mean", "paper_std"),
            lambda r, m: mean_std(r["paper_mean"], r["paper_std"], m.digits),
            unrun=lambda r, m: mean_std(r["paper_mean"], r["paper_std"], m.digits),
        ),
        Column(
            "diff",
            _fixed("ours - paper"),
            ("diff",),
            lambda r, m: _num(r["diff"], m.digits, sign=True),
        ),
        Column(
            "agrees",
            _fixed("agrees"),
            ("tolerance", "seed_tolerance", "agrees"),
            lambda r, m: _agrees(r, m.digits),
        ),
        *(extra_column(extra) for extra in extras),
        Column(  # the test score of the best validation epoch's weights, where runs scored it
            "best_val",
            _fixed("ours at best-val epoch"),
            ("best_val_mean", "best_val_std", "best_val_n"),
            lambda r, m: mean_std(
                r["best_val_mean"], r["best_val_std"], m.digits, int(r["best_val_n"])
            ),
            shown=_has("best_val_n"),
        ),
        Column("time", _fixed("time/epoch (s)"), ("epoch_s",), lambda r, m: f"{r['epoch_s']:.3g}"),
        Column(
            "speedup",
            _fixed("CfC speed-up"),
            ("cfc_speedup", "machine_ratio"),
            lambda r, m: _speedup_cell(r["cfc_speedup"], r.get("machine_ratio", math.nan)),
        ),
        Column(
            "paired_speedup",
            _fixed("CfC speed-up, timing sweep"),
            ("paired_speedup", "paired_machine_ratio", "paired_n"),
            _paired_cell,
            shown=_has("paired_speedup"),
            unrun=_paired_cell,  # a preset timed by `make retime` before any full run
        ),
        Column(
            "paper_speedup",
            _fixed("paper speed-up"),
            ("paper_speedup",),
            _paper_speedup_cell,
            unrun=_paper_speedup_cell,
        ),
        Column("speed_claim", None, ("speed_claim",)),
        Column(
            "params",
            _fixed("params"),
            ("n_params", "epochs"),
            lambda r, m: "-" if pd.isna(r["n_params"]) else f"{int(r['n_params']):,}",
        ),
        Column("budget", _fixed("budget"), ("budget", "comparable"), lambda r, m: r["budget"]),
        Column(
            "device",
            _fixed("device"),
            ("device_name", "train_size", "paper_source"),
            lambda r, m: r["device_name"],
        ),
    ]


def display(table: pd.DataFrame, metric: Metric, extras: tuple[Metric, ...] = ()) -> pd.DataFrame:
    """The columns a reader sees, formatted (Markdown and LaTeX)."""
    shown = [c for c in columns(extras) if c.header is not None and c.shown(table)]
    rows = []
    for _, r in table.iterrows():
        ran = r["status"] == "ran"
        cells = [c.cell if ran else c.unrun for c in shown]
        rows.append([cell(r, metric) if cell is not None else "-" for cell in cells])
    return pd.DataFrame(rows, columns=[c.header(metric) for c in shown])


def csv_frame(table: pd.DataFrame, extras: tuple[Metric, ...] = ()) -> pd.DataFrame:
    """Every column's numbers, in the shown units (whether or not the column is shown)."""
    return table.reindex(columns=[f for c in columns(extras) for f in c.fields])


def speedup_text(r: pd.Series) -> str:
    """The speed-up a row's claim is judged on, for prose: "0.75x in the timing sweep"."""
    value, _, paired = judged_speedup(r)
    return ratio(value) + (" in the timing sweep" if paired else "")
