"""`cfc-bench data`: list, download, verify and describe datasets."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from cfc_bench.data.config import DataConfig, data_root
from cfc_bench.data.datasets import DATASETS, TASK_DATASETS, Dataset, datasets_for
from cfc_bench.data.info import data_info, format_info
from cfc_bench.data.install import install
from cfc_bench.data.manifest import entry_of, is_about, verify
from cfc_bench.data.store import locate
from cfc_bench.errors import DataError


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", help="data root (default: $CFC_BENCH_DATA or ~/.cache/cfc-bench)")
    common.add_argument(
        "--mirror",
        metavar="DIR_OR_URL",
        help="a copy laid out as <mirror>/<dataset>/<files>: a folder is used in place, "
        "a URL is downloaded from (default: $CFC_BENCH_DATA_MIRROR)",
    )
    names = sorted({*TASK_DATASETS, *DATASETS, "all"})
    parser = argparse.ArgumentParser(
        prog="cfc-bench data", description="Download, inspect and verify benchmark datasets."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", parents=[common], help="datasets, sources and status")
    listing.set_defaults(run=_cmd_list)
    download = commands.add_parser(
        "download", parents=[common], help="fetch, check and record datasets"
    )
    download.add_argument(
        "targets", nargs="+", choices=names, metavar="TASK", help=", ".join(names)
    )
    download.set_defaults(run=_cmd_download)
    check = commands.add_parser(
        "verify", parents=[common], help="re-hash datasets against the manifest"
    )
    check.add_argument("targets", nargs="+", choices=names, metavar="TASK", help=", ".join(names))
    check.set_defaults(run=_cmd_verify)
    info = commands.add_parser(
        "info",
        parents=[common],
        help="build a task and describe its data",
        epilog="example: cfc-bench data info physionet task.train_limit=100",
    )
    info.add_argument("task", help="a task name (conf/task/<name>.yaml)")
    info.add_argument("overrides", nargs="*", help="Hydra overrides, as for `cfc-bench train`")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(run=_cmd_info)
    return parser


def _each(targets: Sequence[str]) -> list[Dataset]:
    found: dict[str, Dataset] = {}
    for target in targets:
        datasets = datasets_for(target)
        if not datasets:
            print(f"{target}: needs no data")
        found.update((d.name, d) for d in datasets)
    return list(found.values())


def _cmd_download(args: argparse.Namespace, cfg: DataConfig) -> int:
    failed = 0
    for dataset in _each(args.targets):
        try:
            folder = install(dataset, cfg)
        except DataError as err:
            print(f"{dataset.name}: error: {err}", file=sys.stderr)
            failed += 1
        else:
            print(f"{dataset.name}: ready in {folder}")
    return 1 if failed else 0


def _cmd_verify(args: argparse.Namespace, cfg: DataConfig) -> int:
    failed = 0
    for dataset in _each(args.targets):
        if args.targets == ["all"] and locate(dataset.name, cfg) is None:
            print(f"{dataset.name}: not installed (skipped)")
            continue
        try:
            result = verify(dataset, cfg)
        except DataError as err:
            print(f"{dataset.name}: error: {err}", file=sys.stderr)
            failed += 1
            continue
        if result.ok:
            when = result.recorded["installed_at"] if result.recorded else "?"
            print(
                f"{dataset.name}: ok, {result.checked:,} files in {result.folder} match the "
                f"digests recorded {when}"
            )
        else:
            failed += 1
            shown = result.problems[:20]
            more = len(result.problems) - len(shown)
            print(
                f"{dataset.name}: FAILED in {result.folder}:\n  "
                + "\n  ".join(shown)
                + (f"\n  ... and {more} more" if more > 0 else ""),
                file=sys.stderr,
            )
    return 1 if failed else 0


def _cmd_info(args: argparse.Namespace, cfg: DataConfig) -> int:
    try:
        info = data_info(args.task, args.overrides, cfg)
    except ValueError as err:  # the task or an override does not compose
        print(f"cfc-bench data info: {err}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _cmd_list(args: argparse.Namespace, cfg: DataConfig) -> int:
    root = data_root(cfg)
    for dataset in DATASETS.values():
        tasks = [t for t, names in TASK_DATASETS.items() if dataset.name in names]
        tasks += [dataset.read_by] if dataset.read_by else []
        folder = locate(dataset.name, cfg)
        entry = entry_of(root, dataset.name)
        if folder is None:
            status = "not installed"
        elif is_about(entry, folder):
            status = f"{folder} (recorded {entry['installed_at']})"
        else:
            status = f"{folder} (no digests recorded)"
        print(f"{dataset.name}: {dataset.about}")
        print(f"  tasks: {', '.join(tasks) or '-'}; status: {status}")
        if folder is not None and (missing := dataset.missing(folder)):
            shown = ", ".join(missing[:5]) + (
                f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            print(
                f"  INCOMPLETE: {len(missing)} file{'s' if len(missing) != 1 else ''} of its "
                f"layout missing: {shown}. A task that reads them stops with an error; "
                f"`cfc-bench data download {dataset.name}` completes it"
                + (f"; {dataset.partial}" if dataset.partial else "")
            )
        for source in dataset.sources:
            print(f"  {source.url}" + (f"  {source.digest}" if source.digest else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`cfc-bench data COMMAND ...`; returns the exit status (1 on a data error)."""
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = DataConfig(root=args.root, mirror=args.mirror)
    try:
        return args.run(args, cfg)
    except DataError as err:
        print(f"cfc-bench data {args.command}: error: {err}", file=sys.stderr)
        return 1
