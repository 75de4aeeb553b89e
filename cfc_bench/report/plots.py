"""Figures of ``cfc-bench tables``: each task's test metric against training time per epoch.

One point per row of the task's table that ran (a model, preset, budget and machine): mean
over seeds with a ±1 std bar, against the mean time per epoch on a log axis, the paper's
"accuracy per compute" view. Filled markers are runs exactly as their preset, hollow ones a
reduced or changed budget; marker shapes tell machines apart. Matplotlib draws off-screen
(Agg canvas, no pyplot state) and the PNG is written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from cfc_bench.io import atomic_write

MARKERS = "osD^vP*X"


def plot_metric_vs_time(table: pd.DataFrame, task: str, ylabel: str, out_dir: Path) -> Path:
    """Write ``<out_dir>/<task>_metric_vs_time.png`` from a task table (``tables.compare``)."""
    ran = table[table["status"] == "ran"]
    if not len(ran):
        raise ValueError(f"{task}: no run to plot")
    devices = sorted(ran["device_name"].unique())
    models = list(dict.fromkeys(ran["model"]))
    colours = {m: f"C{i % 10}" for i, m in enumerate(models)}
    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for _, row in ran.iterrows():
        colour = colours[row["model"]]
        marker = MARKERS[devices.index(row["device_name"]) % len(MARKERS)]
        std = 0.0 if math.isnan(row["std"]) else row["std"]
        ax.errorbar(
            row["epoch_s"],
            row["mean"],
            yerr=std,
            fmt=marker,
            color=colour,
            markerfacecolor=colour if row["comparable"] else "none",
            markersize=7,
            capsize=3,
        )
        ax.annotate(
            row["model"],
            (row["epoch_s"], row["mean"]),
            xytext=(5, 4),
            textcoords="offset points",
            fontsize=8,
            color=colour,
        )
    ax.set_xscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel("training time per epoch (s, log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{task}: {ylabel} vs time per epoch")
    ax.grid(True, which="both", alpha=0.3)
    handles = [
        Line2D([], [], marker="o", ls="", color="0.3", label="as preset"),
        Line2D([], [], marker="o", ls="", color="0.3", mfc="none", label="reduced/changed"),
        *(
            Line2D([], [], marker=MARKERS[i % len(MARKERS)], ls="", color="0.3", label=d)
            for i, d in enumerate(devices)
        ),
    ]
    ax.legend(handles=handles, fontsize=7, loc="best")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    path = Path(out_dir) / f"{task}_metric_vs_time.png"
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return path
