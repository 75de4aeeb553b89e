"""`cfc-bench tables`: our results beside the paper's, per task, and a results README.

Scratch tables go to ``outputs/tables`` by default. The committed results under ``results/``
are written by ``make tables`` only: it passes ``--committed``, without which any output
(``--out``, ``--readme``, ``--figures``) inside ``results/`` is refused before anything is read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from cfc_bench.io import write_text
from cfc_bench.report.columns import score_header
from cfc_bench.report.compare import (
    NOT_RUN,
    NOT_RUN_AS_PRESET,
    REPORTED_COLUMNS,
    load_reported,
    task_results,
)
from cfc_bench.report.gather import gather
from cfc_bench.report.readme import readme
from cfc_bench.report.render import failed_only, task_markdown, write_tables

DEFAULT_REPORTED = Path("results/paper/reported.csv")
DEFAULT_OUT = Path("outputs/tables")
COMMITTED = Path("results")  # the committed results: written by `make tables` only


def committed_outputs(args: argparse.Namespace) -> list[str]:
    """The outputs asked for that lie inside the committed results folder."""
    root = COMMITTED.resolve()
    asked = {"--out": args.out, "--readme": args.readme, "--figures": args.figures}
    return [
        f"{flag} {path}"
        for flag, path in asked.items()
        if path is not None and path.resolve().is_relative_to(root)
    ]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cfc-bench tables", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        default=[Path("outputs")],
        help="folders searched for metrics.json",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"folder for the tables (default {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--reported",
        type=Path,
        default=None,
        help=f"the paper's numbers (default: {DEFAULT_REPORTED} when it exists)",
    )
    parser.add_argument("--readme", type=Path, default=None, help="also write this README")
    parser.add_argument(
        "--figures", type=Path, default=None, help="also plot metric vs time per epoch here"
    )
    parser.add_argument(
        "--bench",
        type=Path,
        default=None,
        help="with --figures: also plot the scaling sweeps (cfc-bench bench --sweep) found here",
    )
    parser.add_argument(
        "--ran-only",
        action="store_true",
        help="leave out the paper's rows that have no run (a table of your own runs)",
    )
    parser.add_argument(
        "--committed",
        action="store_true",
        help=f"allow writing the committed results under {COMMITTED}/ (`make tables` passes it)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    inside = [] if args.committed else committed_outputs(args)
    if inside:
        print(
            f"cfc-bench tables: {', '.join(inside)}: {COMMITTED}/ holds the committed results, "
            "which `make tables` writes (with --committed); write scratch tables elsewhere, "
            f"such as --out {DEFAULT_OUT} (the default)",
            file=sys.stderr,
        )
        return 1
    for folder in args.runs:
        if not folder.is_dir():
            print(f"cfc-bench tables: --runs {folder} is not a folder", file=sys.stderr)
            return 1
    reported_path = args.reported or (DEFAULT_REPORTED if DEFAULT_REPORTED.exists() else None)
    if reported_path is None:
        print(f"no {DEFAULT_REPORTED}: tables without the paper's numbers", file=sys.stderr)
        reported = pd.DataFrame(columns=REPORTED_COLUMNS)
    else:
        try:
            reported = load_reported(reported_path)
        except (OSError, ValueError, KeyError) as err:
            print(f"cfc-bench tables: --reported {reported_path}: {err}", file=sys.stderr)
            return 1
    gathered = gather(args.runs)
    results = task_results(gathered, reported)
    if args.ran_only:
        for result in results.values():
            result.table = result.table[~result.table["status"].isin([NOT_RUN, NOT_RUN_AS_PRESET])]
    for path, reason in gathered.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    write_tables(results, args.out)
    if not results:
        print(f"no metrics.json found below {' '.join(map(str, args.runs))}", file=sys.stderr)
    for note in failed_only(gathered.failed, results).values():
        print(note)
    for result in results.values():
        for duplicate in result.duplicates:
            print(f"seed run more than once: {duplicate.describe()}", file=sys.stderr)
    figures: dict[str, Path] = {}
    scaling: list[Path] = []
    if args.figures is not None:
        from cfc_bench.report.plots import plot_metric_vs_time, plot_scaling

        for task, result in results.items():
            figures[task] = plot_metric_vs_time(
                result.table, task, score_header(result.metric), args.figures
            )
        if args.bench is not None:
            scaling, unreadable = plot_scaling(args.bench, args.figures)
            for path, reason in unreadable:
                print(f"skipped {path}: {reason}", file=sys.stderr)
            gathered.skipped.extend(unreadable)
    if args.readme is not None:
        text = readme(
            results,
            reported,
            args.readme,
            args.out,
            figures,
            args.runs,
            reported_path,
            scaling,
            gathered.skipped,
        )
        write_text(args.readme, text)
    for result in results.values():
        print(task_markdown(result))
    if results:
        print(f"tables written to {args.out}/")
    return 0
