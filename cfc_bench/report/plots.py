"""Figures of ``cfc-bench tables``: each task's test metric against training time per epoch, and
the scaling figures of the benchmark sweeps.

One point per row of the task's table that ran (a model, preset, budget and machine): mean
over seeds with a ±1 std bar, against the mean time per epoch on a log axis, the paper's
"accuracy per compute" view. Marker shapes tell machines apart (legend "machine"); filled
markers are runs exactly as their preset, hollow ones a reduced or changed budget (legend
"budget", drawn as patches so that no marker shape means two things).

Outliers. The score axis is fitted to the points that are not far out (:func:`far_out`: a
point that alone would widen the axis more than ``SQUASH`` times), so that one diverged model
does not squash the others; a far-out point is drawn at the axis edge as a triangle pointing
off the scale and labelled with its value. Matplotlib draws off-screen (Agg canvas, no
pyplot state) and the PNG is written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator

from cfc_bench.io import atomic_write

MARKERS = "osD^vP*X"
SQUASH = 5.0  # a point that alone widens the score axis this many times is drawn off scale


def far_out(values: np.ndarray) -> np.ndarray:
    """Which of ``values`` would squash the others: repeatedly, the extreme value (or the two
    extremes, where one alone is not enough) whose removal shrinks the range of the rest more
    than ``SQUASH`` times, as long as 3 values are left."""
    out = np.zeros(len(values), dtype=bool)
    while (~out).sum() > 3:
        kept = np.flatnonzero(~out)
        low, high = kept[np.argmin(values[kept])], kept[np.argmax(values[kept])]
        span = values[high] - values[low]
        options = sorted(
            (np.ptp(values[np.setdiff1d(kept, drop)]), drop) for drop in ([low], [high])
        )
        if (~out).sum() > 4:
            options.append((np.ptp(values[np.setdiff1d(kept, [low, high])]), [low, high]))
        squashing = [drop for rest, drop in options if 0 < rest * SQUASH < span]
        if not squashing:
            break
        out[squashing[0]] = True
    return out


def _limits(ran: pd.DataFrame, outlier: np.ndarray) -> tuple[float, float]:
    """The score axis of the points that are not far out, bars included, with a margin."""
    kept = ran[~outlier]
    std = kept["std"].fillna(0.0)
    low, high = float((kept["mean"] - std).min()), float((kept["mean"] + std).max())
    margin = 0.08 * (high - low) or 0.05 * abs(high) or 1.0
    return low - margin, high + margin


def plot_metric_vs_time(table: pd.DataFrame, task: str, ylabel: str, out_dir: Path) -> Path:
    """Write ``<out_dir>/<task>_metric_vs_time.png`` from a task table (``compare.compare``)."""
    ran = table[table["status"] == "ran"].reset_index(drop=True)
    if not len(ran):
        raise ValueError(f"{task}: no run to plot")
    devices = sorted(ran["device_name"].unique())
    models = list(dict.fromkeys(ran["model"]))
    colours = {m: f"C{i % 10}" for i, m in enumerate(models)}
    outlier = far_out(ran["mean"].to_numpy(dtype=float))
    fig = Figure(figsize=(9.0, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    low, high = _limits(ran, outlier) if outlier.any() else (math.nan, math.nan)
    for i, row in ran.iterrows():
        colour = colours[row["model"]]
        marker = MARKERS[devices.index(row["device_name"]) % len(MARKERS)]
        fill = colour if row["comparable"] else "none"
        label = row["model"]
        if outlier[i]:  # at the edge, pointing off the scale, with its value
            above = row["mean"] > high
            y = high if above else low
            ax.plot(
                row["epoch_s"],
                y,
                "^" if above else "v",
                color=colour,
                mfc=fill,
                ms=9,
                clip_on=False,
            )
            std = "" if pd.isna(row["std"]) else f" ± {row['std']:.3g}"
            label = f"{row['model']}: {row['mean']:.3g}{std} (off scale)"
            xytext = (6, -10 if above else 4)
        else:
            std = 0.0 if pd.isna(row["std"]) else row["std"]
            ax.errorbar(
                row["epoch_s"],
                row["mean"],
                yerr=std,
                fmt=marker,
                color=colour,
                markerfacecolor=fill,
                markersize=7,
                capsize=3,
            )
            y, xytext = row["mean"], (5, 4)
        ax.annotate(
            label, (row["epoch_s"], y), xytext=xytext, textcoords="offset points", fontsize=8,
            color=colour,
        )  # fmt: skip
    if outlier.any():
        ax.set_ylim(low, high)
    ax.set_xscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))  # labelled 1, 2, 5, 10, ...
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="both", labelsize=8)
    ax.set_xlabel("training time per epoch (s, log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{task}: {ylabel} vs time per epoch")
    ax.grid(True, which="both", alpha=0.3)
    machines = [
        Line2D([], [], marker=MARKERS[i % len(MARKERS)], ls="", color="0.3", label=d)
        for i, d in enumerate(devices)
    ]
    budgets = [
        Patch(facecolor="0.3", edgecolor="0.3", label="as preset (filled)"),
        Patch(facecolor="none", edgecolor="0.3", label="reduced/changed (hollow)"),
    ]
    # beside the axes, where they hide no point
    for handles, title, where in ((machines, "machine", "upper"), (budgets, "budget", "lower")):
        fig.legend(
            handles=handles, title=title, fontsize=7, title_fontsize=7, loc=f"outside right {where}"
        )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    path = Path(out_dir) / f"{task}_metric_vs_time.png"
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return path


def plot_scaling(bench_dir: Path, figures: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The scaling figures of the ``cfc-bench bench --sweep`` CSVs in ``bench_dir``.

    Drawn by ``cfc_bench.bench.output.plot_sweep``; CSVs of a single size (no sweep) are
    passed over, unreadable ones returned with the reason.
    """
    if not bench_dir.is_dir():
        return [], []
    from cfc_bench.bench.output import BenchError, plot_sweep

    plotted, skipped = [], []
    for path in sorted(bench_dir.glob("*.csv")):
        try:
            plotted.append(plot_sweep(path, figures))
        except BenchError:  # a benchmark at one size: nothing to plot against
            continue
        except (OSError, ValueError, KeyError) as err:
            skipped.append((path, str(err)))
    return plotted, skipped
