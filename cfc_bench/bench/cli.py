"""`cfc-bench bench`: time a training step and an inference step of every model.

Every model config (``conf/model/*.yaml``, or those named by ``--models``) and ncps' CfC and
LTC (``ncps_cfc``, ``ncps_ltc``; a dev dependency, skipped with a message when missing) are
built at the sizes ``--batch --steps --inputs --hidden`` and timed on one synthetic batch,
round-robin (cfc_bench/bench/measure.py): a training step and an inference step, medians of
``--repeats`` runs after ``--warmup`` untimed ones, the matrix-product floor of each training
step (``--no-matmul-floor`` skips it) and its peak memory (``--no-memory``). Ratios are to
the ``--baseline`` row (default ``cfc``) of the same run (cfc_bench/bench/output.py).

A **setting** names a benchmark: ``--setting NAME`` reads ``cfc_bench/bench/settings/
NAME.yaml`` (or a YAML file given by its path), whose keys are this command's long options
without the dashes (``batch: 128``, ``models: [cfc, lstm]``, ``set: [model.backbone_units=64]``,
``memory: false``); options on the command line override them (a ``--set`` of the same key
replaces the setting's). Output locations are not part of a setting.

Results go to ``<out>/<tag><suffix>.csv``, ``--out`` defaulting to ``outputs/bench``: the
committed CSVs under ``results/bench`` are written by `make bench` and `make scaling` only,
which pass ``--out results/bench``. The table of each size is printed to stdout; progress,
one line per model and repeat, to stderr.

On CPU the process's memory is capped (``--max-memory-gb``, cfc_bench/bench/memory.py), so
that an oversized model fails alone: its row records the error and no time. A model whose
first timed training step takes longer than ``--budget`` seconds is timed once.

``--sweep DIM=V1,V2,...`` repeats the benchmark for each value of one size (batch, steps,
inputs or hidden), writes one CSV and plots ``<figures>/scaling_<DIM>.png``: time per
training step against the size, log-log, one line per model.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import torch
import yaml

from cfc_bench.bench import BenchError, cpu_runtime
from cfc_bench.bench.measure import (
    DIMENSIONS,
    Sizes,
    Spec,
    field_names,
    has_path,
    model_defaults,
    run_point,
)
from cfc_bench.bench.memory import cap_memory
from cfc_bench.bench.ncps import MIRRORS, ncps_available
from cfc_bench.bench.output import format_table, plot_sweep, rows_of, write_csv
from cfc_bench.config import config_names
from cfc_bench.errors import ConfigError
from cfc_bench.run.provenance import device_name, resolve_device
from cfc_bench.text import plural

SETTINGS = Path(__file__).parent / "settings"
# The caller's choices, not the benchmark's: where results go.
NOT_SETTINGS = ("setting", "out", "figures", "plot", "suffix")


class _Parser(argparse.ArgumentParser):
    """Argument errors become :class:`BenchError` (one line, exit 2, nothing written)."""

    def error(self, message: str) -> NoReturn:
        raise BenchError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cfc-bench bench",
        description="Time training and inference steps of every model on one synthetic batch.",
        epilog="examples: cfc-bench bench --setting a; cfc-bench bench --batch 128 --steps 100 "
        "--inputs 82 --hidden 256 --models cfc,ncps_cfc,lstm --set model.backbone_layers=2 "
        "--set model.backbone_activation=silu",
    )
    p.add_argument(
        "--setting",
        metavar="NAME",
        help=f"a named benchmark ({', '.join(setting_names())}; cfc_bench/bench/settings/) or a "
        "YAML file of options; options given here override it",
    )
    p.add_argument("--batch", type=int, default=128, help="B (default 128)")
    p.add_argument("--steps", type=int, default=100, help="T, time steps (default 100)")
    p.add_argument("--inputs", type=int, default=82, help="I, input features (default 82)")
    p.add_argument("--hidden", type=int, default=64, help="H, every model's hidden size (64)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument(
        "--models",
        help="comma-separated model configs, ncps_cfc, ncps_ltc; a model may carry its own "
        "overrides after colons, e.g. ode_rnn:ode.solver=dopri5 "
        "(default: every config and both ncps references)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model override (e.g. model.backbone_layers=2), repeatable; applied to the "
        "models whose schema has KEY",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed runs per model (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baseline", default="cfc", help="row the ratios divide by (default cfc)")
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure peak memory of a training step (default on)",
    )
    p.add_argument(
        "--matmul-floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the matrix products of each training step alone, the floor no "
        "rewrite of the same maths can beat (default on; cfc_bench/bench/matmul_floor.py)",
    )
    p.add_argument(
        "--retain-freed-memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep freed memory in the process (glibc), so that steps reuse it without page "
        "faults; applies to every model of the run (default on; cfc_bench/bench/cpu_runtime.py)",
    )
    p.add_argument(
        "--flush-denormal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="flush subnormal floats to zero, as training does by default; applies to every "
        "model of the run (default on; cfc_bench/bench/cpu_runtime.py)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=120.0,
        help="seconds (default 120): a model whose first timed training step takes longer "
        "is not timed again",
    )
    p.add_argument(
        "--max-memory-gb",
        type=float,
        help="CPU only: cap the memory this process adds; a model that needs more fails "
        "alone (default: 3/4 of the memory available at start)",
    )
    p.add_argument(
        "--observed",
        type=float,
        help="PhysioNet-shaped inputs: [values ; observed-mask] halves, each value observed "
        "with this probability (default: every input a dense random value)",
    )
    p.add_argument("--sweep", metavar="DIM=V1,V2,...", help=f"vary one of {', '.join(DIMENSIONS)}")
    p.add_argument("--out", default="outputs/bench", help="CSV folder (default outputs/bench)")
    p.add_argument(
        "--tag", help="CSV name without .csv (default: the setting's, else from the sizes)"
    )
    p.add_argument("--suffix", default="", help="appended to the CSV name, e.g. _threads2")
    p.add_argument("--figures", help="sweep figure folder (default: the --out folder)")
    p.add_argument("--plot", metavar="CSV", help="only plot an existing sweep CSV, then exit")
    return p


# --------------------------------------------------------------------------- settings


def setting_names() -> list[str]:
    return sorted(path.stem for path in SETTINGS.glob("*.yaml"))


def setting_path(name: str) -> Path:
    """The YAML file of a named setting, or ``name`` itself if it is a YAML file's path."""
    if name.endswith((".yaml", ".yml")):
        if not Path(name).is_file():
            raise BenchError(f"--setting {name}: no such file")
        return Path(name)
    path = SETTINGS / f"{name}.yaml"
    if not path.is_file():
        raise BenchError(
            f"--setting {name!r}: no such setting; choose from {', '.join(setting_names())} "
            "or give the path of a YAML file"
        )
    return path


def setting_argv(name: str) -> list[str]:
    """The options a setting stands for: ``key: value`` becomes ``--key value``, ``key: true``
    / ``false`` ``--key`` / ``--no-key``, a list the option repeated (``set``) or its items
    joined by commas (``models``)."""
    path = setting_path(name)
    where = f"--setting {name} ({path})"
    try:
        values = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise BenchError(f"{where}: cannot read it: {err}") from None
    if not isinstance(values, dict):
        raise BenchError(f"{where}: expected a mapping of option names to values")
    defaults = {k: v for k, v in vars(_parser().parse_args([])).items() if k not in NOT_SETTINGS}
    argv = []
    for key, value in values.items():
        if key in NOT_SETTINGS:
            raise BenchError(f"{where}: {key} is not part of a setting; give --{key} instead")
        if key not in defaults:
            raise BenchError(f"{where}: unknown key {key!r}; keys: {', '.join(defaults)}")
        if value is None:
            raise BenchError(f"{where}: {key} has no value")
        flag = "--" + key.replace("_", "-")
        if isinstance(defaults[key], bool) != isinstance(value, bool):
            kind = "true or false" if isinstance(defaults[key], bool) else "a value"
            raise BenchError(f"{where}: {key} takes {kind}, got {value!r}")
        if isinstance(value, bool):
            argv.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(value, list) and isinstance(defaults[key], list):
            argv += [part for item in value for part in (flag, str(item))]
        elif isinstance(value, list):
            argv += [flag, ",".join(str(item) for item in value)]
        else:
            argv += [flag, str(value)]
    try:
        _parser().parse_args(argv)
    except BenchError as err:
        raise BenchError(f"{where}: {err}") from None
    return argv


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The options of ``argv``, over those of its ``--setting`` if it names one."""
    parser = _parser()
    setting = parser.parse_known_args(argv)[0].setting
    return parser.parse_args([*(setting_argv(setting) if setting else []), *argv])


# --------------------------------------------------------------------------- arguments


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise BenchError(f"--{name} must be a positive integer, got {value}")
    return value


def parse_sweep(text: str) -> tuple[str, list[int]]:
    dim, _, values = text.partition("=")
    if dim not in DIMENSIONS or not values:
        raise BenchError(f"--sweep {text!r}: write DIM=V1,V2,... with DIM one of {DIMENSIONS}")
    try:
        numbers = [_positive(dim, int(v)) for v in values.split(",")]
    except ValueError:
        raise BenchError(f"--sweep {text!r}: values must be positive integers") from None
    return dim, numbers


def _key(text: str, where: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    key = key.strip().removeprefix("model.")
    if not eq or not key or not value:
        raise BenchError(f"{where} {text!r}: write KEY=VALUE, e.g. model.backbone_layers=2")
    if key in ("hidden", "name"):
        raise BenchError(f"{where} {text!r}: model.{key} is set by the benchmark (use --hidden)")
    return key, value.strip()


def parse_sets(texts: list[str]) -> list[tuple[str, str]]:
    """``--set`` overrides as (key, value), a later one of a key replacing an earlier one."""
    return list(dict(_key(s, "--set") for s in texts).items())


def parse_models(text: str | None, available: Sequence[str]) -> list[Spec]:
    mirrors = [name for name, config in MIRRORS.items() if config in available]
    items = [m.strip() for m in text.split(",")] if text else [*available, *mirrors]
    specs = []
    for item in items:
        name, *overrides = item.split(":")
        if name not in available and name not in MIRRORS:
            known = ", ".join([*available, *MIRRORS])
            raise BenchError(f"--models: unknown model {name!r}; choose from {known}")
        config = MIRRORS.get(name, name)
        if config not in available:
            raise BenchError(f"--models: {name} copies the {config!r} config, which is missing")
        keyed = [_key(o, f"--models {name}:") for o in overrides]
        specs.append(Spec(item, config, name in MIRRORS, [f"{k}={v}" for k, v in keyed]))
    if len({s.label for s in specs}) < len(specs):
        raise BenchError(f"--models {text!r} names a model twice")
    return specs


def check_sets(specs: list[Spec], sets: list[tuple[str, str]]) -> None:
    """Every ``--set`` key must belong to at least one selected model."""
    defaults = {s.config: model_defaults(s.config) for s in specs}
    for key, _ in sets:
        if not any(has_path(cfg, key) for cfg in defaults.values()):
            listing = "; ".join(f"{n}: {', '.join(field_names(c))}" for n, c in defaults.items())
            raise BenchError(
                f"--set model.{key}: no selected model has this field. Fields: {listing}"
            )


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> int:
    figures = args.figures or args.out
    if args.plot:
        print(f"wrote {plot_sweep(args.plot, figures)}")
        return 0
    for name in ("batch", "steps", "inputs", "hidden", "repeats"):
        _positive(name, getattr(args, name))
    if args.warmup < 0:
        raise BenchError(f"--warmup must be 0 or more, got {args.warmup}")
    if args.observed is not None and not (0 < args.observed <= 1 and args.inputs % 2 == 0):
        raise BenchError(
            f"--observed {args.observed} with --inputs {args.inputs}: the fraction must be in "
            "(0, 1] and the inputs even ([values ; observed-mask] halves)"
        )
    sweep = parse_sweep(args.sweep) if args.sweep else None
    specs = parse_models(args.models, config_names("model"))
    sets = parse_sets(args.set)
    check_sets(specs, sets)
    if any(s.ncps for s in specs) and not ncps_available():
        skipped = ", ".join(s.label for s in specs if s.ncps)
        print(f"ncps is not installed (pip install ncps): skipping {skipped}", file=sys.stderr)
        specs = [s for s in specs if not s.ncps]
    try:
        device = resolve_device(args.device)
    except ConfigError as err:
        raise BenchError(str(err).replace("device=", "--device ")) from None
    if args.threads is not None:
        _positive("threads", args.threads)
    base = Sizes(args.batch, args.steps, args.inputs, args.hidden)
    points = (
        [base] if sweep is None else [dataclasses.replace(base, **{sweep[0]: v}) for v in sweep[1]]
    )
    tag = args.tag or (
        f"sweep_{sweep[0]}"
        if sweep
        else f"bench_B{base.batch}_T{base.steps}_I{base.inputs}_H{base.hidden}"
    )
    # Process-wide and one-way (cfc_bench/bench/cpu_runtime.py); set before the thread count.
    cpu = cpu_runtime.apply(args.retain_freed_memory, args.flush_denormal)
    # Thread count and memory cap are process-wide: put them back for in-process callers.
    threads, limit = torch.get_num_threads(), resource.getrlimit(resource.RLIMIT_DATA)
    try:
        torch.set_num_threads(args.threads or threads)
        if device.type == "cpu" and sys.platform.startswith("linux"):
            cap_memory(args.max_memory_gb)
        rows = measure_all(specs, sets, points, args, device, sweep[0] if sweep else "", cpu)
    finally:
        torch.set_num_threads(threads)
        resource.setrlimit(resource.RLIMIT_DATA, limit)
    path = write_csv(rows, Path(args.out) / f"{tag}{args.suffix}.csv")
    print(f"wrote {path}")
    if sweep is not None:
        print(f"wrote {plot_sweep(path, figures)}")
    return 0


def measure_all(
    specs: list[Spec],
    sets: list[tuple[str, str]],
    points: list[Sizes],
    args: argparse.Namespace,
    device: torch.device,
    sweep: str,
    cpu: dict[str, Any],
) -> list[dict[str, Any]]:
    """Benchmark rows for every size point, each printed as a table when done; ``cpu``: the
    CPU settings applied (:func:`cpu_runtime.apply`)."""
    context = {
        "sweep": sweep,
        "device": str(device),
        "machine": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "allocator": cpu["allocator"],
        "flush_denormal": cpu["flush_denormal"],
        "repeats": args.repeats,
        "warmup": args.warmup,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sets": sets,
    }
    print(
        f"cfc-bench bench on {context['machine']} ({device}, "
        f"{plural(context['threads'], 'thread')}, torch {torch.__version__}, "
        f"{context['allocator']} allocator, subnormals "
        f"{'flushed' if context['flush_denormal'] else 'kept'})",
        file=sys.stderr,
    )
    rows = []
    for sizes in points:
        print(f"B={sizes.batch} T={sizes.steps} I={sizes.inputs} H={sizes.hidden}", file=sys.stderr)
        entries = run_point(specs, sets, sizes, args, device)
        point = rows_of(entries, sizes, args.baseline, context)
        print(format_table(point), flush=True)
        rows += point
    return rows


def main(argv: list[str] | None = None) -> int:
    """`cfc-bench bench ...`; returns the exit status (2 on a bad argument)."""
    try:
        return run(parse_args(sys.argv[1:] if argv is None else argv))
    except BenchError as err:
        print(f"cfc-bench bench: error: {err}", file=sys.stderr)
        return 2
