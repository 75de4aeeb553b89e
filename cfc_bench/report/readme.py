"""``results/README.md``: what reproduces (computed from the tables), how to read them (the
judging rules quoted from :mod:`cfc_bench.report.judge`), then the tables and figures."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from cfc_bench.report.columns import machine_drift, mean_std, ratio, speedup_text
from cfc_bench.report.compare import FAILED, NOT_RUN_AS_PRESET, TaskResult
from cfc_bench.report.gather import TIMING_FOLDER
from cfc_bench.report.judge import (
    MACHINE_TOLERANCE,
    REFERENCE_MODEL,
    agreement,
    judged_speedup,
    machine_drifted,
    rule,
    speed_claim,
    verdict,
)
from cfc_bench.report.render import task_markdown

TASKS = ("xor", "physionet", "person_activity", "walker", "et_smnist")  # README order


def _not_judged_why(row: pd.Series) -> str:
    if not row["comparable"]:
        return row["budget"]
    return "no paper number" if math.isnan(row["paper_mean"]) else "no std to judge against"


# "Paper rows without a run": why, where it is more than that
_WHY_NOT_RUN = {FAILED: " (failed)", NOT_RUN_AS_PRESET: " (only runs of other settings)"}


def _timed(r: pd.Series) -> bool:
    """A row with a speed-up: it ran, or `make retime` timed its preset (a not-run row)."""
    return r["status"] == "ran" or not pd.isna(r.get("paired_speedup", math.nan))


def _machine_differed(r: pd.Series) -> bool:
    changed = r.get("changed")
    changed = False if pd.isna(changed) else bool(changed)
    judged = _timed(r) and r["model"] != REFERENCE_MODEL and not changed
    return judged and machine_drifted(judged_speedup(r)[1])


def summary_lines(result: TaskResult) -> list[str]:
    """What reproduces and what does not, from the judged rows of one task."""
    metric = result.metric
    digits = metric.digits
    table = result.table
    ran = [r for _, r in table.iterrows() if r["status"] == "ran"]
    lines = []

    def listed(label: str, rows: list[pd.Series], text: Callable[[pd.Series], str]) -> None:
        if rows:
            lines.append(f"- {label}: " + "; ".join(text(r) for r in rows))

    def value(r: pd.Series) -> str:
        ours = mean_std(r["mean"], r["std"], digits, r["n"])
        paper = mean_std(r["paper_mean"], r["paper_std"], digits)
        text = f"{r['model']} (ours {ours}, paper {paper}"
        if verdict(r["agrees"]) is False:  # say which way the difference goes
            better = (r["mean"] > r["paper_mean"]) == metric.higher_is_better
            text += ", ours better" if better else ", ours worse"
        return text + ")"

    listed(
        "Reproduces (within the spread)", [r for r in ran if verdict(r["agrees"]) is True], value
    )
    listed("Does not reproduce", [r for r in ran if verdict(r["agrees"]) is False], value)

    clocked = [r for _, r in table.iterrows() if _timed(r)]
    timed = [r for r in clocked if isinstance(r["speed_claim"], str) or _machine_differed(r)]
    several = {m for m in (r["model"] for r in timed) if sum(t["model"] == m for t in timed) > 1}

    def speedup(r: pd.Series) -> str:
        """A model with several timed rows: each named by its budget."""
        who = f"{r['model']} ({r['budget']})" if r["model"] in several else r["model"]
        return f"over {who} {speedup_text(r)}"

    for claim in ("reproduces", "direction only", "does not reproduce"):
        listed(
            f"CfC speed-up {claim}",
            [r for r in clocked if r["speed_claim"] == claim],
            lambda r: f"{speedup(r)} (paper {ratio(r['paper_speedup'])})",
        )
    listed(
        f"CfC speed-up not judged (machine speed differed by more than {MACHINE_TOLERANCE}x)",
        [r for r in clocked if _machine_differed(r)],
        lambda r: f"{speedup(r)} ({machine_drift(judged_speedup(r)[1])})",
    )
    listed(
        "Not judged",
        [r for r in ran if verdict(r["agrees"]) is None],
        lambda r: f"{r['model']} ({_not_judged_why(r)})",
    )
    listed(
        "Paper rows without a run",
        [r for _, r in table.iterrows() if r["status"] != "ran"],
        lambda r: r["model"] + _WHY_NOT_RUN.get(r["status"], ""),
    )
    return lines


def how_to_read() -> str:
    """The reading guide: what each column holds; the judging rules are quoted from their
    functions, so that they are written once."""
    return (
        "## How to read the tables\n\n"
        "- *ours*: mean ± sample std over distinct seeds (n), whichever machine each seed ran "
        "on (*device* names them all; a seed run twice counts once, the duplicates are listed "
        "under the table); *paper*: the paper's mean ± std (its scripts use the population "
        "std over 3–5 runs). Accuracy is in percent for every task and *ours - paper* is in "
        "the table's units.\n"
        f"- {rule(agreement)} Only rows run exactly as a paper preset are judged.\n"
        "- *ours: test AUPRC* (PhysioNet) and other extra metrics: recorded beside the task's "
        "metric; runs made before a metric was recorded show it empty unless their "
        "`test_outputs.npz` lets it be computed.\n"
        "- *ours at best-val epoch* (tables of runs that test the last epoch and have a "
        "validation split): the test score of the weights of the best validation epoch, "
        "the protocol of the references that restore their best checkpoint (the ODE-LSTM "
        "scripts). Shown beside the last epoch's score; *agrees* judges the latter.\n"
        "- *CfC speed-up*: the model's time per epoch over CfC's, both measured in the same "
        "sweep on the same machine, threads and training-set size, each model with its own "
        "preset (batch sizes differ as in the paper); the mean over the row's runs that "
        "have such CfC runs, never a run trained in pieces on two machines. "
        "*paper speed-up*: the paper's minutes per epoch over CfC's, figures copied from "
        "papers that used other GPUs.\n"
        f"- {rule(speed_claim)}\n"
        f"- {rule(machine_drifted)}\n"
        f"- *CfC speed-up, timing sweep* (tables of tasks with a `{TIMING_FOLDER}/<task>` "
        "folder of runs, `make retime TASK=<task>`): the same ratio from every preset "
        "trained for a few epochs back to back, so that all models of the task are timed "
        "within minutes of each other; shown on one row per preset (the row as preset where "
        "there is one; a row *not run as preset* where every run of the model changed a "
        "setting); those runs' scores are not shown (a few epochs score nothing). "
        f"{rule(judged_speedup)}\n"
        "- *budget*: `as preset` or what differs from the preset: REDUCED (fewer epochs, "
        "`task.train_limit`, a smoke data subset) or CHANGED (any other setting).\n"
    )


def readme(
    results: dict[str, TaskResult],
    reported: pd.DataFrame,
    readme_path: Path,
    tables_dir: Path,
    figures: dict[str, Path],
    runs_dirs: Sequence[Path],
    reported_path: Path | None,
    scaling: list[Path],
    skipped: list[tuple[Path, str]],
) -> str:
    """results/README.md: a summary computed from the tables, then the tables themselves.

    Tasks: this project's (in README order), then any other task that has runs; the paper's
    rows of a task this project does not have are left out.
    """
    from cfc_bench.config import config_names

    here = readme_path.parent

    def link(path: Path) -> str:
        return Path(os.path.relpath(path, here)).as_posix()

    ours = set(config_names("task"))
    paper_tasks = set(reported.get("task", [])) & ours
    tasks = [*TASKS, *sorted((set(results) | paper_tasks) - set(TASKS))]
    under = " and ".join(f"`{d}`" for d in runs_dirs)
    parts = [
        "# Results\n",
        f"Generated by `make tables` (`cfc-bench tables`) from the runs under {under} and "
        + (
            f"the paper's numbers in `{reported_path}`"
            if reported_path is not None
            else "no paper numbers"
        )
        + "; edit neither this file nor the tables by hand. Runs come from "
        "`make reproduce TASK=<task>` (presets `conf/experiment/<task>_<model>.yaml`, 3 seeds).\n",
        "## Summary\n",
    ]
    for task in tasks:
        if task not in results:
            parts.append(
                f"**{task}**: no runs committed for task {task} (`make reproduce TASK={task}`).\n"
            )
            continue
        lines = summary_lines(results[task])
        parts.append(f"**{task}**:\n\n" + "\n".join(lines or ["- nothing to judge yet"]) + "\n")
    parts.append(how_to_read())
    for task in (t for t in tasks if t in results):
        parts.append(task_markdown(results[task]).replace("## ", "## Table: ", 1))
        parts.append(
            f"Files: [{task}.md]({link(tables_dir / f'{task}.md')}), "
            f"[{task}.csv]({link(tables_dir / f'{task}.csv')}), "
            f"[{task}.tex]({link(tables_dir / f'{task}.tex')})\n"
        )
        if task in figures:
            parts.append(f"![{task}: metric vs time per epoch]({link(figures[task])})\n")
    if scaling:
        parts.append(
            "## Scaling\n\nTime per training step against one size, all else fixed "
            "(`cfc-bench bench --sweep`).\n\n"
            + "".join(f"![{path.stem}]({link(path)})\n" for path in scaling)
        )
    if skipped:
        parts.append(
            "## Unreadable files\n\n"
            + "".join(f"- `{path}`: {reason}\n" for path, reason in skipped)
        )
    return "\n".join(parts)
