"""Rendering a task's table: Markdown (with its failed runs and duplicate seeds), LaTeX and CSV,
all from the columns of :mod:`cfc_bench.report.columns`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cfc_bench.io import write_text
from cfc_bench.report.columns import csv_frame, display, score_header
from cfc_bench.report.compare import TaskResult


def title(result: TaskResult) -> str:
    return f"{result.task}: {score_header(result.metric)}, mean ± std over seeds (n)"


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
        ("$", r"\$"),
    ):
        text = text.replace(a, b)
    return text.replace("±", r"$\pm$").replace("≤", r"$\leq$").replace(">", r"$>$")


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


def failed_markdown(failed: pd.DataFrame) -> str:
    """The list of failed runs printed under a task's table."""
    return "Failed runs:\n\n" + "".join(
        f"- {r.get('model')} seed {r.get('seed')}: {r.get('reason')} ({r.get('path')})\n"
        for r in failed.to_dict("records")
    )


def task_markdown(result: TaskResult) -> str:
    """Title, table, then the task's failed runs and the seeds run more than once."""
    shown = display(result.table, result.metric, result.extras)
    markdown = f"## {title(result)}\n\n{to_markdown(shown)}"
    if len(result.failed):
        markdown += "\n" + failed_markdown(result.failed)
    if result.duplicates:
        markdown += "\nSeeds run more than once (one run counted):\n\n" + "".join(
            f"- {d.describe()}\n" for d in result.duplicates
        )
    return markdown


def failed_only(failed: pd.DataFrame, results: dict[str, TaskResult]) -> dict[str, str]:
    """Tasks whose every run failed: no table to put their failures under, so a note each."""
    if not len(failed) or "task" not in failed:
        return {}
    return {
        task: f"## {task}: no finished runs\n\n{failed_markdown(failed[failed['task'] == task])}"
        for task in sorted(set(failed["task"].dropna()) - set(results))
    }


def write_tables(results: dict[str, TaskResult], out_dir: Path) -> None:
    """``<task>.md``, ``<task>.csv`` (numbers, shown units) and ``<task>.tex`` per task."""
    for task, result in results.items():
        shown = display(result.table, result.metric, result.extras)
        write_text(out_dir / f"{task}.md", task_markdown(result))
        csv = csv_frame(result.table, result.extras).to_csv(index=False, float_format="%.6g")
        write_text(out_dir / f"{task}.csv", csv)
        write_text(out_dir / f"{task}.tex", to_latex(shown, title(result)))
