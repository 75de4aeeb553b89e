"""What `cfc-bench bench` writes: one row per model and size, ratios to a baseline row, the
CSV, the table printed to stdout and the log-log figure of a sweep.

Times are medians of the timed runs, in milliseconds. Ratios (``train_vs_cfc``,
``infer_vs_cfc``) divide a row's median time by that of the baseline row (``--baseline``,
default ``cfc``) measured in the same run with the same sizes: above 1 the row is slower
than the baseline. A failed row (status ``failed: ...``) shows no time and no ratio, and the
ncps-over-ours lines of the table are printed only where both sides ran. Every CSV row
carries the machine, torch version, threads, sizes and the model's full settings.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from cfc_bench.bench import BenchError
from cfc_bench.bench.measure import DIMENSIONS, Entry, Sizes, Timing
from cfc_bench.bench.ncps import MIRRORS
from cfc_bench.config import flatten
from cfc_bench.io import atomic_write
from cfc_bench.text import plural

SYMBOLS = {"batch": "B", "steps": "T", "inputs": "I", "hidden": "H"}
COLUMNS = [
    "model",
    "implementation",
    "status",
    "params",
    "train_ms",
    "infer_ms",
    "train_vs_cfc",
    "infer_vs_cfc",
    "matmul_ms",
    "matmul_calls",
    "train_cpu_ms",
    "infer_cpu_ms",
    "train_ms_min",
    "train_ms_max",
    "train_faults",
    "peak_mem_mib",
    "timed_runs",
    "batch",
    "steps",
    "inputs",
    "hidden",
    "sweep",
    "device",
    "machine",
    "torch",
    "threads",
    "allocator",
    "flush_denormal",
    "repeats",
    "warmup",
    "baseline",
    "overrides",
    "settings",
    "started",
]


def failed(row: dict[str, Any]) -> bool:
    return str(row["status"]).startswith("failed")


def _median_ms(runs: list[Timing], which: int) -> float:
    return 1e3 * statistics.median(r[which] for r in runs) if runs else math.nan


def rows_of(
    entries: list[Entry], sizes: Sizes, baseline: str, context: dict[str, Any]
) -> list[dict[str, Any]]:
    """One CSV row per entry; ``context``: the run's columns (machine, threads, ...) and
    ``sets``, the ``--set`` overrides as (key, value)."""
    rows = []
    for e in entries:
        walls = [r[0] for r in e.train]
        rows.append(
            {
                "model": e.spec.label,
                "implementation": "ncps" if e.spec.ncps else "cfc_bench",
                "status": e.status,
                "params": e.params,
                "train_ms": _median_ms(e.train, 0),
                "infer_ms": _median_ms(e.infer, 0),
                "matmul_ms": _median_ms(e.matmul, 0),
                "matmul_calls": e.replay.count if e.replay is not None else 0,
                "train_cpu_ms": _median_ms(e.train, 1),
                "infer_cpu_ms": _median_ms(e.infer, 1),
                "train_ms_min": 1e3 * min(walls) if walls else math.nan,
                "train_ms_max": 1e3 * max(walls) if walls else math.nan,
                "train_faults": statistics.median(r[2] for r in e.train) if e.train else math.nan,
                "peak_mem_mib": e.peak_mem_mib,
                "timed_runs": len(e.train),
                **dataclasses.asdict(sizes),
                "overrides": " ".join(
                    [f"model.{k}={v}" for k, v in context["sets"] if k in flatten(e.settings)]
                    + [f"model.{o}" for o in e.spec.overrides]
                ),
                "settings": json.dumps(e.settings, sort_keys=True),
                **{k: v for k, v in context.items() if k != "sets"},
            }
        )
    add_ratios(rows, baseline)
    return rows


def add_ratios(rows: list[dict[str, Any]], baseline: str) -> None:
    """``train_vs_cfc`` and ``infer_vs_cfc``: time over the baseline row's (same sizes)."""
    for row in rows:
        row["baseline"] = baseline
        ref = next(
            (r for r in rows if r["model"] == baseline and all(r[d] == row[d] for d in DIMENSIONS)),
            None,
        )
        for kind in ("train", "infer"):
            ok = ref is not None and ref[f"{kind}_ms"] > 0
            row[f"{kind}_vs_cfc"] = row[f"{kind}_ms"] / ref[f"{kind}_ms"] if ok else math.nan


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row[k]) for k in COLUMNS})
    return atomic_write(path, lambda f: f.write(buffer.getvalue().encode()))


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width table, then ncps' time over ours for each ncps row whose
    counterpart ran too."""

    def num(row: dict[str, Any], key: str, fmt: str) -> str:
        width = int(fmt.split(".")[0] or 0)
        value = math.nan if failed(row) else row[key]
        return f"{'-':>{width}s}" if math.isnan(value) else format(value, fmt)

    baseline = rows[0]["baseline"] if rows else "cfc"
    header = (
        f"{'model':34s} {'params':>9s} {'train ms':>9s} {'×' + baseline:>7s} "
        f"{'infer ms':>9s} {'×' + baseline:>7s} {'matmul ms':>9s} {'cpu ms':>8s} "
        f"{'peak MiB':>9s}  status"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['model'][:34]:34s} {r['params']:9d} {num(r, 'train_ms', '9.1f')} "
            f"{num(r, 'train_vs_cfc', '7.2f')} {num(r, 'infer_ms', '9.1f')} "
            f"{num(r, 'infer_vs_cfc', '7.2f')} {num(r, 'matmul_ms', '9.1f')} "
            f"{num(r, 'train_cpu_ms', '8.1f')} "
            f"{num(r, 'peak_mem_mib', '9.1f')}  {r['status']}"
        )
    by_label = {r["model"]: r for r in rows}
    for label, mirror in MIRRORS.items():
        pair = [by_label.get(label), by_label.get(mirror)]
        if any(r is None or failed(r) or math.isnan(r["train_ms"]) for r in pair):
            continue
        theirs, ours = pair
        ratio = {k: theirs[f"{k}_ms"] / ours[f"{k}_ms"] for k in ("train", "infer")}
        line = (
            f"{label} / {mirror}: training step {ratio['train']:.2f}×, inference "
            f"{ratio['infer']:.2f}× (above 1: ours is faster)"
        )
        if ours["matmul_ms"] >= 0.1 * ours["train_ms"]:  # where products matter at all
            line += (
                f"; the most any rewrite of {mirror} could reach: "
                f"{theirs['train_ms'] / ours['matmul_ms']:.2f}× (its training "
                "step's matrix products alone)"
            )
        lines.append(line)
    return "\n".join(lines)


def plot_sweep(csv_path: str | Path, out_dir: str | Path) -> Path:
    """``<out_dir>/scaling_<dim>.png``: training-step time against the swept size, log-log."""
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    table = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    dims = table["sweep"].dropna().unique() if "sweep" in table else []
    if len(dims) != 1:
        raise BenchError(f"{csv_path}: not a sweep CSV (its 'sweep' column names no dimension)")
    dim = str(dims[0])
    ran = table[table["train_ms"].notna()]
    fixed = ", ".join(
        f"{SYMBOLS[d]}={int(ran[d].iloc[0])}" for d in DIMENSIONS if d != dim and len(ran)
    )
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (model, group) in enumerate(ran.groupby("model", sort=False)):
        group = group.sort_values(dim)
        ax.plot(group[dim], group["train_ms"], marker="o", color=f"C{i % 10}", label=model)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_xlabel(f"{dim} {SYMBOLS[dim]} (log scale)")
    ax.set_ylabel("time per training step (ms, log scale)")
    machine = (
        f"; {ran['machine'].iloc[0]}, {plural(int(ran['threads'].iloc[0]), 'thread')}"
        if len(ran)
        else ""
    )
    ax.set_title(f"training step vs {dim} ({fixed}{machine})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    path = Path(out_dir) / f"scaling_{dim}.png"
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))
