"""`cfc-bench tune`: an equal-budget search per model on validation data, then the best
configuration as a preset, retrained with several seeds and tested (docs/tuning.md).

For each model, in ``<out>/<task>/<model>``:

1. Search: ``cfc-bench train -m`` with Hydra's Optuna sweeper (conf/hydra/sweeper/search.yaml),
   the model's search space (conf/search/model/<model>.yaml, and the task's own knobs in
   conf/search/task/<task>.yaml where there is one) and the study in ``study.db``. The base
   configuration is the task's paper preset for the model where there is one (its epochs,
   optimiser and fixed settings), under ``task.protocol=default``, then the extra overrides.
   Each trial trains in ``trial_<digest of its overrides>``: a trial run again with the same
   settings finds its folder and resumes or returns there.
2. Preset: the best completed trial among the first N (cfc_bench.tune.study) as
   ``<presets>/experiment/tuned/<task>_<model>.yaml``, every learning setting spelt out, with a
   ``tuning`` block (budget, search space, trial, validation score, study). An existing preset
   that differs is never overwritten.
3. Retrain: that preset with each seed into ``<runs>/<task>/<model>/seed<N>``, tested.

Running the same command again continues where it stopped: finished trials count, trials of
a killed search run again, finished seeds are skipped.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cfc_bench.config import RUNTIME_KEYS, config_names, register_configs
from cfc_bench.errors import ConfigError
from cfc_bench.metrics import Metric
from cfc_bench.tune.guard import direction, search_metric

log = logging.getLogger(__name__)

PRESET_GROUP = "tuned"  # presets are experiment=tuned/<task>_<model>
TRIAL_SUBDIR = "'trial_${digest:${hydra.job.override_dirname}}'"  # quoted: nested ${}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="cfc-bench tune",
        description="Search each model's settings on validation data (Hydra's Optuna sweeper), "
        "write the best as a preset, retrain it with several seeds and test it.",
        epilog="Extra Hydra overrides (e.g. trainer.threads=1) apply to every stage. "
        "Run the same command again to resume. See docs/tuning.md.",
    )
    parser.add_argument("--task", required=True)
    parser.add_argument("--models", required=True, help="comma-separated, e.g. cfc,gru_d,lstm")
    parser.add_argument("--trials", type=int, required=True, help="the budget of every model")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the retrained preset")
    parser.add_argument("--out", type=Path, default=Path("outputs/tune"), help="the studies")
    parser.add_argument("--runs", type=Path, help="the retrained runs (default <out>/runs)")
    parser.add_argument(
        "--presets", type=Path, help="config root of the presets (default <out>/conf)"
    )
    parser.add_argument("--search-only", action="store_true", help="stop after the presets")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    args.runs = args.runs or args.out / "runs"
    args.presets = args.presets or args.out / "conf"
    return args


def base_overrides(task: str, model: str, extra: list[str]) -> list[str]:
    """The search's fixed settings: the paper preset where there is one, the default
    protocol (the one with validation data), then the user's overrides."""
    preset = f"{task}_{model}"
    start = (
        [f"experiment={preset}"]
        if preset in config_names("experiment")
        else [f"task={task}", f"model={model}"]
    )
    return [*start, "paper_preset=false", "task.protocol=default", *extra]


def search_overrides(task: str, model: str) -> list[str]:
    """The search space: the model's, and the task's own knobs where it has some."""
    if model not in config_names("search/model"):
        raise ConfigError(
            f"model {model} has no search space: add conf/search/model/{model}.yaml "
            "(see docs/tuning.md and conf/search/model/cfc.yaml)"
        )
    found = ["hydra/sweeper=search", f"+search/model={model}"]
    return found + ([f"+search/task={task}"] if task in config_names("search/task") else [])


def compose_search(overrides: list[str]) -> DictConfig:
    """The sweep's composed config, Hydra's part included (nothing resolved, nothing loaded)."""
    from hydra import compose, initialize_config_module

    register_configs()
    with initialize_config_module("cfc_bench.conf", version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def stage(args: list[str]) -> int:
    """``cfc-bench <args>`` in a child process that the kernel kills if this one dies."""

    def die_with_parent() -> None:  # Linux: PR_SET_PDEATHSIG, so no search outlives SIGKILL
        try:
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)
        except (OSError, AttributeError):
            pass

    command = [sys.executable, "-m", "cfc_bench.cli", *args]
    print("+ cfc-bench " + " ".join(args), flush=True)
    return subprocess.run(command, preexec_fn=die_with_parent).returncode


def searchpath(presets: Path) -> list[str]:
    """The override that lets Hydra find presets outside the package's own configs."""
    from importlib.resources import files

    if presets.resolve() == Path(str(files("cfc_bench.conf"))).resolve():
        return []
    return [f"hydra.searchpath=[file://{presets.resolve()}]"]


def preset_text(run_cfg: Any, task: str, model: str, tuning: dict[str, Any], metric: Metric) -> str:
    """The tuned preset: every learning setting of the chosen trial, and how it was chosen."""
    plain = OmegaConf.to_container(OmegaConf.structured(run_cfg), enum_to_str=True)
    body: dict[str, Any] = {}
    for group in ("model", "task", "trainer"):
        body[group] = {
            k: v
            for k, v in plain[group].items()
            if not any(f"{group}.{k}" == r or r.startswith(f"{group}.{k}.") for r in RUNTIME_KEYS)
        }
    body["paper_preset"] = False
    body["tuning"] = tuning
    defaults = {"defaults": [{"override /model": model}, {"override /task": task}, "_self_"]}
    header = (
        "# @package _global_\n"
        f"# Written by `cfc-bench tune` (docs/tuning.md): the best of {tuning['trials']} "
        f"trials on the validation\n# split ({metric.label}), every learning setting as "
        "that trial had it;\n# `tuning` records how it was chosen.\n"
    )
    return header + OmegaConf.to_yaml(defaults) + OmegaConf.to_yaml(body)


def write_preset(path: Path, text: str) -> None:
    if path.exists() and path.read_text() != text:
        raise ConfigError(
            f"{path} exists and holds another configuration: it is never overwritten; move "
            "it away, or give this search its own --out/--presets"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def summarise(runs: Path, metric: Metric) -> str:
    scores = []
    for path in sorted(runs.glob("seed*/metrics.json")):
        value = json.loads(path.read_text()).get(f"test/{metric.name}")
        if isinstance(value, (int, float)):
            scores.append(value * metric.scale)
    if not scores:
        return "no finished run"
    spread = f" ± {statistics.stdev(scores):.{metric.digits}f}" if len(scores) > 1 else ""
    mean = f"{statistics.mean(scores):.{metric.digits}f}"
    return f"test {metric.header} {mean}{spread} (n={len(scores)})"


def tune_model(args: argparse.Namespace, model: str) -> None:
    from cfc_bench.config import compose
    from cfc_bench.tune.study import progress, recover

    task = args.task
    base = base_overrides(task, model, args.overrides)
    space = search_overrides(task, model)
    sweep_dir = args.out / task / model
    config = compose_search([*base, *space, f"hydra.sweep.dir={sweep_dir}"])
    metric = search_metric(config.task)  # refuses a task without validation data
    maximize = metric.higher_is_better
    storage, name = f"sqlite:///{sweep_dir}/study.db", f"{config.task.name}_{config.model.name}"
    for number in recover(storage, name):
        log.warning("trial %d of %s was interrupted: it runs again", number, name)
    status, code = progress(storage, name, args.trials, maximize), 0
    if status.remaining:
        print(f"{name}: {len(status.counted)} of {args.trials} trials done or running", flush=True)
        code = stage(
            [
                "train",
                "-m",
                *base,
                *space,
                f"hydra.sweeper.n_trials={status.remaining}",
                f"hydra.sweeper.direction={direction(metric)}",
                f"hydra.sweep.dir={sweep_dir}",
                f"hydra.sweep.subdir={TRIAL_SUBDIR}",
            ]
        )  # a failed trial makes it exit 1: the study records the trial as failed
        status = progress(storage, name, args.trials, maximize)
    if not status.finished:
        raise ConfigError(
            f"{name}: {len(status.within)} of {args.trials} trials asked for, not all finished "
            f"(the search exited with status {code}, or trials still run in another "
            "process): see the messages above, then run the same command again"
        )
    best = status.best()
    if best is None:
        raise ConfigError(f"{name}: all {args.trials} trials failed; see {sweep_dir}")
    print(
        f"{name}: best of {args.trials} trials ({status.failed} failed): trial {best.number}, "
        f"val {metric.name} {best.value:.4g}, {best.params}",
        flush=True,
    )
    chosen = [*base, *(f"{k}={v}" for k, v in best.params.items())]
    fixed = {o.split("=", 1)[0].lstrip("+~") for o in base}  # overrides win over the space
    tuning = {
        "trials": args.trials,
        "space": {k: v for k, v in config.hydra.sweeper.params.items() if k not in fixed},
        "trial": best.number,
        "val": float(best.value),
        "study": f"{sweep_dir}/study.db",
    }
    preset = f"{task}_{model}"
    path = args.presets / "experiment" / PRESET_GROUP / f"{preset}.yaml"
    write_preset(path, preset_text(compose(chosen), task, model, tuning, metric))
    print(f"{name}: preset {path} (experiment={PRESET_GROUP}/{preset})", flush=True)
    if args.search_only:
        return
    runs = args.runs / task / model
    code = stage(
        [
            "train",
            "-m",
            f"experiment={PRESET_GROUP}/{preset}",
            f"seed={args.seeds}",
            f"hydra.sweep.dir={runs}",
            "hydra.sweep.subdir=seed${seed}",
            *searchpath(args.presets),
            *args.overrides,
        ]
    )
    if code:
        raise ConfigError(f"{name}: retraining the preset failed (exit {code}); see {runs}")
    print(f"{name}: tuned, {summarise(runs, metric)}", flush=True)


def main(argv: list[str]) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from hydra.errors import HydraException

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        for model in models:  # every search space exists before the first search starts
            search_overrides(args.task, model)
        for model in models:
            tune_model(args, model)
    except (ConfigError, HydraException) as err:
        print(f"cfc-bench tune: error: {err}", file=sys.stderr)
        return 2
    return 0
