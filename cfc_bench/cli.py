"""The `cfc-bench` command: dispatches to its subcommands."""

from __future__ import annotations

import sys

USAGE = """usage: cfc-bench <command> [args]

commands:
  train    train and test one model on one task (Hydra app; -m for sweeps)
             cfc-bench train model=cfc task=xor
             cfc-bench train -m model=cfc,lstm task=xor seed=0,1,2
             cfc-bench train --help        config groups and their options
  tables   gather metrics.json files into per-task comparison tables
             cfc-bench tables --runs outputs --out outputs/tables
  data     download, inspect and verify benchmark datasets
             cfc-bench data download physionet --mirror ../shared/data
             cfc-bench data info walker
  bench    time training and inference steps of every model (CSV under outputs/bench)
             cfc-bench bench --setting a
  tune     search each model's settings on validation data (same budget each), write the
           best as a preset, retrain it with 3 seeds and test it (pip install 'cfc-bench[tune]')
             cfc-bench tune --task physionet --models cfc,lstm --trials 24
  check-model  run the model contract (shapes, causality, padding) on a model
             cfc-bench check-model my_rnn

Run `cfc-bench <command> --help` for a command's options.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        from cfc_bench.config import plugins
        from cfc_bench.plugins import PluginError, check_selected

        try:
            check_selected(rest, {group: plugins(group)[1] for group in ("model", "task")})
        except PluginError as err:
            print(f"cfc-bench train: error: {err}", file=sys.stderr)
            return 1
        from cfc_bench.run.app import hydra_main

        sys.argv = ["cfc-bench train", *rest]
        hydra_main()
        return 0
    if command == "tables":
        from cfc_bench.report.cli import main as tables_main

        return tables_main(rest)
    if command == "data":
        from cfc_bench.data.cli import main as data_main

        return data_main(rest)
    if command == "bench":
        from cfc_bench.bench.cli import main as bench_main

        return bench_main(rest)
    if command == "tune":
        from cfc_bench.tune.cli import main as tune_main

        return tune_main(rest)
    if command == "check-model":
        from cfc_bench.models.contract import main as check_main

        return check_main(rest)
    print(f"cfc-bench: unknown command '{command}'\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
