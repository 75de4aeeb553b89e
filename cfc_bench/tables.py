"""`cfc-bench tables`: gather run results into per-task comparison tables.

Every ``metrics.json`` below ``--runs`` (single runs and multiruns alike) is one row of
data; rows are grouped by task, model and experiment and summarised as mean ± sample
standard deviation over seeds (n). CfC's speed-up over a model is the ratio of their
median times per epoch, taken only between runs on the same machine (``device_name``)
and the same training-set size, so that the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cfc_bench.io import write_text

REQUIRED = ("task", "model", "metric", "seed", "time/epoch_s", "device_name", "train_size")
METRIC_LABEL = {"accuracy": "test accuracy (%)", "auc": "test ROC AUC", "mse": "test MSE"}
METRIC_SCALE = {"accuracy": 100.0, "auc": 1.0, "mse": 1.0}  # accuracy shown in percent
METRIC_DIGITS = {"accuracy": 2, "auc": 4, "mse": 4}
REFERENCE_MODEL = "cfc"


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


def gather(root: Path) -> Gathered:
    rows, failed, skipped = [], [], []
    for path in sorted(root.rglob("metrics.json")):
        try:
            data = _read(path)
            missing = [k for k in REQUIRED if k not in data]
            test_key = f"test/{data.get('metric')}"
            if test_key not in data:
                missing.append(test_key)
            if missing:
                raise ValueError(f"missing keys {missing}")
            value = data[test_key]
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"{test_key} is {value!r}, not a number")
            rows.append({**data, "test": float(value), "path": str(path)})
        except (OSError, ValueError) as err:  # JSONDecodeError is a ValueError
            skipped.append((path, str(err)))
    for path in sorted(root.rglob("failed.json")):
        try:
            data = _read(path)
            failed.append({**data, "path": str(path.parent)})
        except (OSError, ValueError) as err:
            skipped.append((path, str(err)))
    runs = pd.DataFrame(rows)
    if len(runs):
        runs["experiment"] = runs.get("experiment").fillna("-") if "experiment" in runs else "-"
    return Gathered(runs, pd.DataFrame(failed), skipped)


def _mean_std(values: pd.Series, digits: int) -> str:
    n = len(values)
    if n == 1:
        return f"{values.iloc[0]:.{digits}f} (n=1)"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f} (n={n})"


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, experiment, machine, training size) of one task's runs."""
    metric = runs["metric"].iloc[0]
    scale, digits = METRIC_SCALE[metric], METRIC_DIGITS[metric]
    keys = ["model", "experiment", "device_name", "train_size"]
    out = []
    for key, group in runs.groupby(keys, sort=True, dropna=False):
        values = group["test"] * scale
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n": len(group),
                "mean": values.mean(),
                "std": values.std(ddof=1) if len(group) > 1 else float("nan"),
                "result": _mean_std(values, digits),
                "epoch_s": group["time/epoch_s"].mean(),
                "step_ms": group["time/step_ms"].mean() if "time/step_ms" in group else None,
                "n_params": int(group["n_params"].iloc[0]) if "n_params" in group else None,
                "epochs": int(group["epochs"].max()) if "epochs" in group else None,
            }
        )
    table = pd.DataFrame(out)
    table["cfc_speedup"] = [_speedup(table, row) for _, row in table.iterrows()]
    return table


def _speedup(table: pd.DataFrame, row: pd.Series) -> float | None:
    """Time per epoch of this row over CfC's, on the same machine and training size."""
    ref = table[
        (table["model"] == REFERENCE_MODEL)
        & (table["device_name"] == row["device_name"])
        & (table["train_size"] == row["train_size"])
    ]
    if ref.empty:
        return None
    ref = ref.sort_values("n", ascending=False).iloc[0]  # the CfC group with the most seeds
    return float(row["epoch_s"] / ref["epoch_s"])


def display(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The columns a reader sees, formatted."""
    return pd.DataFrame(
        {
            "model": table["model"],
            "experiment": table["experiment"],
            METRIC_LABEL[metric]: table["result"],
            "time/epoch (s)": table["epoch_s"].map(lambda v: f"{v:.3g}"),
            "CfC speed-up": table["cfc_speedup"].map(
                lambda v: "-" if v is None or pd.isna(v) else f"{v:.2f}x"
            ),
            "params": table["n_params"].map(
                lambda v: "-" if v is None or pd.isna(v) else f"{int(v):,}"
            ),
            "epochs": table["epochs"],
            "train size": table["train_size"],
            "device": table["device_name"],
        }
    )


def to_markdown(frame: pd.DataFrame) -> str:
    cells = [[str(v) for v in row] for row in frame.itertuples(index=False)]
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    return "\n".join([header, rule, *("| " + " | ".join(r) + " |" for r in cells)]) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
    ):
        text = text.replace(a, b)
    return text.replace("±", r"$\pm$")


def to_latex(frame: pd.DataFrame, caption: str) -> str:
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_escape(caption)}}}",
        r"\begin{tabular}{" + "l" * len(frame.columns) + "}",
        r"\toprule",
        " & ".join(_latex_escape(str(c)) for c in frame.columns) + r" \\",
        r"\midrule",
        *(
            " & ".join(_latex_escape(str(v)) for v in row) + r" \\"
            for row in frame.itertuples(index=False)
        ),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def write_tables(gathered: Gathered, out_dir: Path) -> dict[str, str]:
    """Write ``<task>.md/.csv/.tex`` per task; returns the Markdown text per task."""
    texts: dict[str, str] = {}
    runs = gathered.runs
    for task in sorted(runs["task"].unique()) if len(runs) else []:
        task_runs = runs[runs["task"] == task]
        metric = task_runs["metric"].iloc[0]
        shown = display(summarise(task_runs), metric)
        title = f"{task}: {METRIC_LABEL[metric]}, mean ± std over seeds"
        markdown = f"## {title}\n\n{to_markdown(shown)}"
        failed = gathered.failed
        if len(failed) and "task" in failed:
            task_failed = failed[failed["task"] == task]
            if len(task_failed):
                markdown += "\nFailed runs:\n\n" + "".join(
                    f"- {r.get('model')} seed {r.get('seed')}: {r.get('reason')} "
                    f"({r.get('path')})\n"
                    for r in task_failed.to_dict("records")
                )
        write_text(out_dir / f"{task}.md", markdown)
        write_text(out_dir / f"{task}.csv", shown.to_csv(index=False))
        write_text(out_dir / f"{task}.tex", to_latex(shown, title))
        texts[task] = markdown
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cfc-bench tables", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs", type=Path, default=Path("outputs"), help="folder searched for metrics.json"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("results/tables"), help="folder for the tables"
    )
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        print(f"cfc-bench tables: --runs {args.runs} is not a folder", file=sys.stderr)
        return 1
    gathered = gather(args.runs)
    for path, reason in gathered.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    texts = write_tables(gathered, args.out)
    if not texts:
        print(f"no metrics.json found below {args.runs}", file=sys.stderr)
    for text in texts.values():
        print(text)
    if texts:
        print(f"tables written to {args.out}/")
    return 0
