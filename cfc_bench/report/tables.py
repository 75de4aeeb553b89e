"""`cfc-bench tables`: our results beside the paper's, per task, and a results README.

Every ``metrics.json`` below the ``--runs`` folders (the committed runs, then the
diagnostic runs that explain a gap, each a CHANGED or REDUCED row) is one run. Runs are
grouped by model, preset (``experiment``), budget and training-set size, and summarised as
mean ± sample standard deviation (ddof 1) over seeds (n), whatever machine each seed ran
on (the row names them all); times are divided only within one machine (below).

Budget. A run that names a preset is compared with it (``conf/experiment/<preset>.yaml``
composed with the run's seed) using the resolved ``config.yaml`` beside its metrics, or,
without one, the ``epochs``, ``train_limit`` and ``protocol`` of its metrics. Every
model, task or trainer setting that differs is stated: fewer epochs, ``task.train_limit``
or data that a task notes as "NOT the paper protocol" make a row REDUCED, anything else
CHANGED. Only rows that match their preset (and have a paper number) are judged.

Units. Accuracy is shown in percent for every task: the paper gives XOR and ET-sMNIST in
percent and human activity as a fraction, our ``metrics.json`` a fraction. "ours - paper"
is in those units (percentage points, AUC, MSE).

Agreement. Our mean agrees with the paper's when ``|ours - paper| <= 2·sqrt(s_ours² +
s_paper²)``, ``s`` the standard deviations over seeds, and at least one of our seeds would
agree on its own, lies within ``2·sqrt(2)·s_paper`` of the paper's mean: otherwise seeds that
scatter widely (a run that diverged in every seed) widen the tolerance until anything agrees.
With one seed, ``s_ours`` is taken as the paper's (the two conditions are then one); without
a paper std, ``s_paper`` as ours; with neither, nothing is judged.

Speed-up. A run's time per epoch is divided by the mean time per epoch of the CfC runs of
the same sweep (the folder holding Hydra's ``multirun.yaml``; a single run is its own
sweep), on the same machine, thread count and training-set size; a row's speed-up is the
mean over its runs that have such CfC runs. A run trained in pieces on more than one machine
(``device_names`` in metrics.json) has no speed-up: its time per epoch is no one
machine's. Runs of one sweep folder may still be days apart, and a shared machine's speed
drifts: where both sides recorded the machine-speed probe (``time/probe_ms``,
``cfc_bench/bench/probe.py``) and the probes differ by more than ``MACHINE_TOLERANCE``, the
speed-up is shown with that drift and not judged. Runs under ``<runs>/timing/<task>``
(``make retime``: every preset of a task trained a few epochs back to back) give a second
speed-up, "timing sweep", for each row that changes no setting of its preset but the budget;
it is the one judged where it exists, and those runs are not rows. The paper's speed-up is its
minutes per epoch over CfC's, figures that mix GPUs (``results/paper/README.md``). A speed
claim reproduces when our speed-up is on the same side of 1 as the paper's and within a
factor of 2 of it; "direction only" when only the side agrees. Speed claims are judged for
every row that changes no setting of its preset but the budget (a REDUCED row too: fewer
epochs or a smaller training set leave the time per step as it is, and CfC's runs beside it
have the same training-set size).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf

from cfc_bench.config import RUNTIME_KEYS, flatten
from cfc_bench.io import write_text

REQUIRED = ("task", "model", "metric", "seed", "time/epoch_s", "device_name", "train_size")
METRIC_LABEL = {"accuracy": "test accuracy (%)", "auc": "test ROC AUC", "mse": "test MSE"}
METRIC_SCALE = {"accuracy": 100.0, "auc": 1.0, "mse": 1.0}  # accuracy shown in percent
METRIC_DIGITS = {"accuracy": 2, "auc": 4, "mse": 4}
# reported.csv's metric column: our metric and the factor to the shown units
REPORTED_UNITS = {
    "accuracy_pct": ("accuracy", 1.0),
    "accuracy": ("accuracy", 100.0),
    "auc": ("auc", 1.0),
    "mse": ("mse", 1.0),
}
REPORTED_COLUMNS = [
    "task",
    "model",
    "our_model",
    "metric",
    "mean",
    "std",
    "minutes_per_epoch",
    "source",
]
TASKS = ("xor", "physionet", "person_activity", "walker", "et_smnist")  # README order
REFERENCE_MODEL = "cfc"
SWEEP_MARKER = "multirun.yaml"  # Hydra writes it at the top of every sweep folder
# <runs>/timing/<task>: every preset trained for a few epochs back to back (`make retime`),
# the one place where all models of a task are timed within minutes of each other
TIMING_FOLDER = "timing"
# settings that change neither what is learnt nor the budget
IGNORED = ("seed", *RUNTIME_KEYS, "trainer.eval_batch_size")
NOT_PAPER_DATA = "NOT the paper protocol"  # how a task's notes flag a smoke data subset


@dataclass
class Gathered:
    runs: pd.DataFrame  # one row per metrics.json
    failed: pd.DataFrame  # one row per failed.json
    skipped: list[tuple[Path, str]]  # unreadable files and why


# -- reading runs ---------------------------------------------------------------------------
def _read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _sweep(run_dir: Path, root: Path) -> str:
    """The sweep folder a run belongs to: the nearest folder up to ``root`` with multirun.yaml."""
    for folder in (run_dir, *run_dir.parents):
        if (folder / SWEEP_MARKER).exists():
            return str(folder)
        if folder == root:
            break
    return str(run_dir)


def gather(roots: Sequence[Path]) -> Gathered:
    rows, failed, skipped = [], [], []
    for root, path in ((r, p) for r in roots for p in sorted(r.rglob("metrics.json"))):
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
            config = path.parent / "config.yaml"
            rows.append(
                {
                    **data,
                    "test": float(value),
                    "path": str(path),
                    "sweep": _sweep(path.parent, root),
                    "timing": path.relative_to(root).parts[0] == TIMING_FOLDER,
                    "config": OmegaConf.load(config) if config.exists() else None,
                }
            )
        except (OSError, ValueError, yaml.YAMLError) as err:  # JSONDecodeError: a ValueError
            skipped.append((path, str(err)))
    for path in (p for r in roots for p in sorted(r.rglob("failed.json"))):
        try:
            data = _read(path)
            failed.append({**data, "path": str(path.parent)})
        except (OSError, ValueError) as err:
            skipped.append((path, str(err)))
    runs = pd.DataFrame(rows)
    if len(runs):
        experiment = runs["experiment"] if "experiment" in runs else pd.Series(None, runs.index)
        runs["experiment"] = experiment.fillna("-")
    return Gathered(runs, pd.DataFrame(failed), skipped)


# -- budget: each run against its preset ----------------------------------------------------
def compose_presets(pairs: set[tuple[str, str]]) -> dict[tuple[str, str], DictConfig | None]:
    """Each (preset, model) composed (unresolved, so that the seed can be set per run).

    The run's model is passed too: a preset that fixes no model (such as ``demo``) is
    compared with the model the run used. None where the preset does not exist.
    """
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException

    from cfc_bench.config import config_names, register_configs

    register_configs()
    known = set(config_names("experiment"))
    presets: dict[tuple[str, str], DictConfig | None] = dict.fromkeys(pairs)
    with initialize_config_module("cfc_bench.conf", version_base="1.3"):
        for name, model in sorted(p for p in pairs if p[0] in known):
            try:
                overrides = [f"experiment={name}", f"model={model}"]
                presets[name, model] = compose("config", overrides=overrides)
            except HydraException:  # a preset that no longer composes: no budget to compare
                presets[name, model] = None
    return presets


def _plain(config: DictConfig, seed: Any) -> dict[str, Any]:
    config = config.copy()
    config.seed = seed  # interpolations such as task.resample_seed=${seed} follow the run
    flat = flatten(OmegaConf.to_container(config, resolve=True, enum_to_str=True))
    return {
        k: v for k, v in flat.items() if not any(k == i or k.startswith(f"{i}.") for i in IGNORED)
    }


def schema_defaults(config: DictConfig) -> dict[str, Any]:
    """The dataclass defaults of every structured group of ``config`` (model, task, ...),
    flattened as :func:`_plain` flattens."""
    found = {}
    for group, node in config.items():
        schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        if schema is not None and dataclasses.is_dataclass(schema):
            plain = OmegaConf.to_container(OmegaConf.structured(schema), enum_to_str=True)
            found |= {f"{group}.{k}": v for k, v in flatten(plain).items()}
    return found


class Budget(NamedTuple):
    text: str  # "as preset (N epochs)" or what is REDUCED and CHANGED
    matches: bool  # the run is its preset's, as the preset says
    changed: bool  # a setting other than the budget differs (or there is no preset)


def budget(run: dict[str, Any], preset: DictConfig | None) -> Budget:
    """How a run's settings differ from its preset's, and whether they match it."""
    notes = [str(v) for k, v in run.items() if k.startswith("note/") and NOT_PAPER_DATA in str(v)]
    if preset is None:
        what = "no preset" if run["experiment"] == "-" else f"preset {run['experiment']} not found"
        details = [f"{run.get('epochs', '?')} epochs"]
        if run.get("train_limit") is not None:
            details.append(f"task.train_limit={run['train_limit']}")
        details += [f"data: {n}" for n in notes]
        return Budget(f"{what}: {'; '.join(details)}", False, True)
    want = _plain(preset, run["seed"])
    if run.get("config") is not None:
        have = _plain(run["config"], run["seed"])
        # A setting added after the run is absent from its config.yaml; the run had the
        # behaviour that the setting's default keeps (new settings default to the old way).
        defaults = schema_defaults(preset)
        have |= {k: defaults[k] for k in want.keys() - have.keys() if k in defaults}
    else:  # no config.yaml: what metrics.json records of the budget and protocol
        have = {
            **want,
            "trainer.epochs": run.get("epochs"),
            "task.train_limit": run.get("train_limit"),
            "task.protocol": run.get("protocol", want.get("task.protocol")),
        }
    reduced, changed = [], []
    for key in sorted(want.keys() | have.keys()):
        mine, theirs = have.get(key, "-"), want.get(key, "-")
        if mine == theirs:
            continue
        if key == "trainer.epochs" and isinstance(mine, int) and isinstance(theirs, int):
            (reduced if mine < theirs else changed).append(f"{mine}/{theirs} epochs")
        elif key == "task.train_limit" and theirs is None:
            reduced.append(f"{key}={mine}")
        else:
            changed.append(f"{key}={mine} (preset: {theirs})")
    reduced += [f"data: {n}" for n in notes]
    parts = [f"REDUCED: {'; '.join(reduced)}"] if reduced else []
    parts += [f"CHANGED: {'; '.join(changed)}"] if changed else []
    text = " ".join(parts) or f"as preset ({want['trainer.epochs']} epochs)"
    return Budget(text, not parts, bool(changed))


# -- the paper's numbers --------------------------------------------------------------------
def load_reported(path: Path) -> pd.DataFrame:
    """reported.csv with ``metric`` as ours and ``mean``/``std`` in the shown units."""
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = [c for c in REPORTED_COLUMNS if c not in table]
    if missing:
        raise ValueError(f"missing columns {missing} (see results/paper/README.md)")
    unknown = sorted(set(table["metric"]) - REPORTED_UNITS.keys())
    if unknown:
        raise ValueError(f"unknown metric {unknown}; expected one of {sorted(REPORTED_UNITS)}")
    factor = table["metric"].map(lambda m: REPORTED_UNITS[m][1])
    table["mean"] = table["mean"] * factor
    table["std"] = table["std"] * factor
    table["metric"] = table["metric"].map(lambda m: REPORTED_UNITS[m][0])
    return table


# -- summaries ------------------------------------------------------------------------------
def _cell(run: dict[str, Any]) -> tuple[Any, ...]:
    """Runs whose times may be divided: same sweep, machine, thread count, training size."""
    threads = run.get("threads")
    threads = None if threads is None or pd.isna(threads) else int(threads)
    return run["sweep"], run["device_name"], threads, run["train_size"]


def _spans_machines(run: dict[str, Any]) -> bool:
    names = run.get("device_names")
    return isinstance(names, list) and len(names) > 1


def _probe(run: dict[str, Any]) -> float:
    value = run.get("time/probe_ms")
    return math.nan if value is None or pd.isna(value) else float(value)


def _speedups(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's time per epoch over the mean of the CfC runs of its cell (``_cell``), and
    its machine-speed probe over theirs (NaN where a run predates the probe)."""
    records = runs.to_dict("records")
    cfc: dict[tuple, dict[tuple, list[dict]]] = {}
    for run in records:
        if run["model"] == REFERENCE_MODEL:
            configs = cfc.setdefault(_cell(run), {})
            configs.setdefault((run["experiment"], run["budget"]), []).append(run)
    # several CfC configurations in one cell: the one with the most runs
    reference = {cell: max(c.values(), key=len) for cell, c in cfc.items()}
    ratios, machine = [], []
    for run in records:
        refs = [] if _spans_machines(run) else reference.get(_cell(run), [])
        mean = (lambda values: sum(values) / len(values)) if refs else (lambda values: math.nan)
        ratios.append(run["time/epoch_s"] / mean([r["time/epoch_s"] for r in refs]))
        machine.append(_probe(run) / mean([_probe(r) for r in refs]))
    return pd.DataFrame({"speedup": ratios, "machine": machine}, index=runs.index)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, experiment, budget, training size) of one task's runs."""
    metric = runs["metric"].iloc[0]
    scale = METRIC_SCALE[metric]
    runs = runs.join(_speedups(runs))
    best_key = f"test_at_best_val/{metric}"  # recorded by runs that test the last epoch
    keys = ["model", "experiment", "budget", "train_size"]
    out = []
    for key, group in runs.groupby(keys, sort=True, dropna=False):
        values = group["test"] * scale
        at_best = scale * pd.to_numeric(
            group[best_key] if best_key in group else pd.Series(dtype=float), errors="coerce"
        )
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "comparable": bool(group["comparable"].all()),
                "changed": bool(group["changed"].any()),
                "n": len(group),
                "device_name": "; ".join(sorted(group["device_name"].unique())),
                "scores": tuple(values),
                "mean": values.mean(),
                "std": values.std(ddof=1) if len(group) > 1 else math.nan,
                "epoch_s": group["time/epoch_s"].mean(),
                "best_val_mean": at_best.mean(),
                "best_val_std": at_best.std(ddof=1) if at_best.count() > 1 else math.nan,
                "best_val_n": int(at_best.count()),
                "cfc_speedup": group["speedup"].mean(),  # NaN when no run has a CfC beside it
                # the probe's time over CfC's: how much slower the machine ran for these runs
                "machine_ratio": group["machine"].mean(),
                "n_params": group["n_params"].iloc[0] if "n_params" in group else math.nan,
                "epochs": group["epochs"].max() if "epochs" in group else math.nan,
            }
        )
    return pd.DataFrame(out)


PAIRED_KEYS = ["model", "experiment", "train_size"]
PAIRED_COLUMNS = ["paired_speedup", "paired_machine_ratio", "paired_n"]


def paired_speedups(timing: pd.DataFrame) -> pd.DataFrame:
    """The speed-ups measured in the timing sweeps, per model, preset and training size
    (each run's divided within its machine), from the runs whose settings are their preset's
    but for the budget."""
    timing = timing[~timing["changed"]] if len(timing) else timing
    if not len(timing):
        return pd.DataFrame(columns=[*PAIRED_KEYS, *PAIRED_COLUMNS])
    timing = timing.join(_speedups(timing))
    grouped = timing.groupby(PAIRED_KEYS, dropna=False)
    return grouped.agg(
        paired_speedup=("speedup", "mean"),
        paired_machine_ratio=("machine", "mean"),
        paired_n=("speedup", "size"),
    ).reset_index()


def with_paired(summary: pd.DataFrame, paired: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with the timing sweep's speed-up of each row that changes no setting."""
    if not len(paired):  # no timing sweep (merging its empty, untyped columns would fail)
        return summary.assign(**dict.fromkeys(PAIRED_COLUMNS, math.nan))
    out = summary.merge(paired, on=PAIRED_KEYS, how="left")
    out.loc[out["changed"], PAIRED_COLUMNS] = math.nan
    return out


def judged_speedup(row: pd.Series) -> tuple[float, float, bool]:
    """The speed-up a claim is judged on, its machine ratio, and whether it is the timing
    sweep's (preferred: its models ran minutes apart, a sweep's may be days apart)."""
    paired = row.get("paired_speedup", math.nan)
    if not pd.isna(paired):
        return float(paired), float(row["paired_machine_ratio"]), True
    machine = row.get("machine_ratio", math.nan)
    return float(row["cfc_speedup"]), math.nan if pd.isna(machine) else float(machine), False


def agreement(
    values: Sequence[float], paper_mean: float, paper_std: float
) -> tuple[float, float, bool | None]:
    """The tolerance for our mean, the one for a single seed, and whether ours agrees.

    ``values`` are our seeds' scores. Agreement needs the mean within
    ``2·sqrt(s_ours² + s_paper²)`` of the paper's and one seed within ``2·sqrt(2)·s_paper``.
    """
    scores = np.asarray(values, dtype=float)
    s_ours = float(scores.std(ddof=1)) if len(scores) > 1 else paper_std
    s_paper = paper_std if not math.isnan(paper_std) else s_ours
    if math.isnan(paper_mean) or math.isnan(s_ours) or math.isnan(s_paper):
        return math.nan, math.nan, None
    tolerance = 2 * math.hypot(s_ours, s_paper)
    seed_tolerance = 2 * math.hypot(s_paper, s_paper)
    mean_within = abs(float(scores.mean()) - paper_mean) <= tolerance
    a_seed_within = float(np.abs(scores - paper_mean).min()) <= seed_tolerance
    return tolerance, seed_tolerance, bool(mean_within and a_seed_within)


def verdict(value: Any) -> bool | None:
    """A table's ``agrees`` cell as True, False or None (pandas may hold NaN for "not judged")."""
    return bool(value) if isinstance(value, (bool, np.bool_)) else None


# Probe times of a model's and CfC's runs further apart than this: the machine's speed, not
# the models', may explain their ratio, which is then not judged.
MACHINE_TOLERANCE = 1.25


def machine_drifted(machine: float) -> bool:
    """Whether the probe ratio ``machine`` (NaN: not recorded) is beyond the tolerance."""
    return not (math.isnan(machine) or 1 / MACHINE_TOLERANCE <= machine <= MACHINE_TOLERANCE)


def speed_claim(ours: float, paper: float, machine: float = math.nan) -> str | None:
    if math.isnan(ours) or math.isnan(paper) or machine_drifted(machine):
        return None
    if (ours > 1) != (paper > 1):
        return "does not reproduce"
    return "reproduces" if 0.5 <= ours / paper <= 2 else "direction only"


def compare(summary: pd.DataFrame, reported: pd.DataFrame, failed: set[str]) -> pd.DataFrame:
    """Our rows beside the paper's, in the paper's row order, then models it does not have.

    A paper row with no run of its model becomes a "not run" (or "failed") row.
    """
    cfc_row = reported[reported["our_model"] == REFERENCE_MODEL]
    cfc_minutes = float(cfc_row["minutes_per_epoch"].iloc[0]) if len(cfc_row) else math.nan
    rows = []
    paper_rows = [r for _, r in reported.iterrows()]
    order = [r["our_model"] if isinstance(r["our_model"], str) else None for r in paper_rows]
    extra = sorted(set(summary["model"]) - set(order)) if len(summary) else []
    for paper, model in [*zip(paper_rows, order, strict=True), *((None, m) for m in extra)]:
        paper_model = paper["model"] if paper is not None else None
        p_mean = float(paper["mean"]) if paper is not None else math.nan
        p_std = float(paper["std"]) if paper is not None else math.nan
        p_speed = paper["minutes_per_epoch"] / cfc_minutes if paper is not None else math.nan
        base = {
            "model": model or paper_model,
            "paper_model": paper_model,
            "paper_mean": p_mean,
            "paper_std": p_std,
            "paper_speedup": p_speed,
            "paper_source": paper["source"] if paper is not None else None,
        }
        ours = summary[summary["model"] == model] if model is not None and len(summary) else []
        if not len(ours):
            status = "failed" if model in failed else "not run"
            rows.append({**base, "status": status, "comparable": False, "n": 0})
            continue
        for _, row in ours.sort_values(["comparable", "n"], ascending=False).iterrows():
            tolerance, seed_tolerance, agrees = agreement(row["scores"], p_mean, p_std)
            comparable = bool(row["comparable"])
            speedup, machine, _ = judged_speedup(row)
            rows.append(
                {
                    **base,
                    **row.to_dict(),
                    "status": "ran",
                    "diff": row["mean"] - p_mean,
                    "tolerance": tolerance,
                    "seed_tolerance": seed_tolerance,
                    "agrees": agrees if comparable else None,
                    "speed_claim": speed_claim(speedup, p_speed, machine)
                    if not row["changed"] and model != REFERENCE_MODEL
                    else None,
                }
            )
    return pd.DataFrame(rows)


# -- formatting -----------------------------------------------------------------------------
def _num(value: Any, digits: int, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _mean_std(mean: float, std: float, digits: int, n: int | None = None) -> str:
    if math.isnan(mean):
        return "-"
    text = _num(mean, digits) if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return text if n is None else f"{text} (n={n})"


def _ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"


def _speedup_cell(speedup: float, machine: float) -> str:
    """Our speed-up, and the machine's own slow-down where it was too large to ignore."""
    machine = math.nan if pd.isna(machine) else float(machine)
    if pd.isna(speedup) or not machine_drifted(machine):
        return _ratio(math.nan if pd.isna(speedup) else float(speedup))
    return f"{_ratio(float(speedup))} ({_machine_drift(machine)})"


def _machine_drift(machine: float) -> str:
    if machine >= 1:
        return f"machine {machine:.2f}x slower than for CfC"
    return f"machine {1 / machine:.2f}x faster than for CfC"


def _machine_differed(r: pd.Series) -> bool:
    judged = r["status"] == "ran" and r["model"] != REFERENCE_MODEL and not bool(r["changed"])
    return judged and machine_drifted(judged_speedup(r)[1])


def display(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The columns a reader sees, formatted."""
    digits = METRIC_DIGITS[metric]
    # Only where runs scored it: the test score at the best validation epoch's weights.
    at_best = "best_val_n" in table and bool((table["best_val_n"].fillna(0) > 0).any())
    paired = "paired_speedup" in table and bool(table["paired_speedup"].notna().any())
    columns = [
        "model",
        "preset",
        f"ours: {METRIC_LABEL[metric]}",
        "paper",
        "ours - paper",
        "agrees",
        *(["ours at best-val epoch"] if at_best else []),
        "time/epoch (s)",
        "CfC speed-up",
        *(["CfC speed-up, timing sweep"] if paired else []),
        "paper speed-up",
        "params",
        "budget",
        "device",
    ]
    rows = []
    for _, r in table.iterrows():
        name = r["model"]
        if isinstance(r["paper_model"], str) and r["paper_model"] != name:
            name = f"{name} (paper: {r['paper_model']})"
        paper = _mean_std(r["paper_mean"], r["paper_std"], digits)
        if r["status"] != "ran":
            rows.append([name, "-", r["status"], paper, *["-"] * (len(columns) - 4)])
            continue
        agrees, judged = "-", verdict(r["agrees"])
        if judged is not None:
            if judged or abs(r["diff"]) > r["tolerance"]:
                why = f"{'≤' if judged else '>'} {r['tolerance']:.{digits}f}"
            else:  # the mean is within a tolerance that the seeds' own scatter made wide
                why = f"no seed within ± {r['seed_tolerance']:.{digits}f}"
            agrees = f"{'yes' if judged else 'no'} ({why})"
        best = []
        if at_best:  # a ran row always counts its runs that have the score (maybe 0)
            n_best = int(r["best_val_n"])
            best = [_mean_std(r["best_val_mean"], r["best_val_std"], digits, n_best)]
        rows.append(
            [
                name,
                r["experiment"],
                _mean_std(r["mean"], r["std"], digits, r["n"]),
                paper,
                _num(r["diff"], digits, sign=True),
                agrees,
                *best,
                f"{r['epoch_s']:.3g}",
                _speedup_cell(r["cfc_speedup"], r.get("machine_ratio", math.nan)),
                *(
                    [_speedup_cell(r["paired_speedup"], r["paired_machine_ratio"])]
                    if paired
                    else []
                ),
                _ratio(r["paper_speedup"]),
                "-" if math.isnan(r["n_params"]) else f"{int(r['n_params']):,}",
                r["budget"],
                r["device_name"],
            ]
        )
    return pd.DataFrame(rows, columns=columns)


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


CSV_COLUMNS = [
    "model", "paper_model", "status", "experiment", "n", "mean", "std", "paper_mean",
    "paper_std", "diff", "tolerance", "seed_tolerance", "agrees", "best_val_mean",
    "best_val_std", "best_val_n", "epoch_s", "cfc_speedup", "machine_ratio", "paired_speedup",
    "paired_machine_ratio", "paired_n", "paper_speedup",
    "speed_claim", "n_params", "epochs", "budget", "comparable", "device_name", "train_size",
    "paper_source",
]  # fmt: skip


# -- per task -------------------------------------------------------------------------------
@dataclass
class TaskResult:
    task: str
    metric: str
    table: pd.DataFrame  # compare()'s rows
    markdown: str  # title, table and failed runs


def task_results(gathered: Gathered, reported: pd.DataFrame) -> dict[str, TaskResult]:
    runs, failed = gathered.runs, gathered.failed
    if not len(runs):
        return {}
    records = runs.to_dict("records")
    presets = compose_presets(
        {(r["experiment"], r["model"]) for r in records if r["experiment"] != "-"}
    )
    labels = [budget(r, presets.get((r["experiment"], r["model"]))) for r in records]
    # Only a run of the paper's preset for its task and model is judged against the paper.
    paper_preset = [r["experiment"] == f"{r['task']}_{r['model']}" for r in records]
    runs = runs.assign(
        budget=[
            b.text if p or not b.matches else f"{b.text}; not the paper preset"
            for b, p in zip(labels, paper_preset, strict=True)
        ],
        comparable=[b.matches and p for b, p in zip(labels, paper_preset, strict=True)],
        changed=[b.changed for b in labels],
    )
    # The timing sweeps' runs give speed-ups only: their few epochs score nothing.
    paired = paired_speedups(runs[runs["timing"]])
    runs = runs[~runs["timing"]]
    results = {}
    for task in sorted(runs["task"].unique()):
        task_runs = runs[runs["task"] == task]
        metric = task_runs["metric"].iloc[0]
        paper = reported[reported["task"] == task] if len(reported) else reported
        task_failed = failed[failed["task"] == task] if "task" in failed else failed
        summary = with_paired(summarise(task_runs), paired)
        table = compare(summary, paper, set(task_failed.get("model", [])))
        title = f"{task}: {METRIC_LABEL[metric]}, mean ± std over seeds (n)"
        markdown = f"## {title}\n\n{to_markdown(display(table, metric))}"
        if len(task_failed):
            markdown += "\n" + failed_markdown(task_failed)
        results[task] = TaskResult(task, metric, table, markdown)
    return results


def failed_markdown(failed: pd.DataFrame) -> str:
    """The list of failed runs printed under a task's table."""
    return "Failed runs:\n\n" + "".join(
        f"- {r.get('model')} seed {r.get('seed')}: {r.get('reason')} ({r.get('path')})\n"
        for r in failed.to_dict("records")
    )


def failed_only(gathered: Gathered, results: dict[str, TaskResult]) -> dict[str, str]:
    """Tasks whose every run failed: no table to put their failures under, so a note each."""
    failed = gathered.failed
    if not len(failed) or "task" not in failed:
        return {}
    return {
        task: f"## {task}: no finished runs\n\n{failed_markdown(failed[failed['task'] == task])}"
        for task in sorted(set(failed["task"].dropna()) - set(results))
    }


def write_tables(results: dict[str, TaskResult], out_dir: Path) -> None:
    """``<task>.md``, ``<task>.csv`` (numbers, shown units) and ``<task>.tex`` per task."""
    for task, result in results.items():
        table = result.table.reindex(columns=CSV_COLUMNS)
        title = f"{task}: {METRIC_LABEL[result.metric]}, mean ± std over seeds (n)"
        write_text(out_dir / f"{task}.md", result.markdown)
        write_text(out_dir / f"{task}.csv", table.to_csv(index=False, float_format="%.6g"))
        write_text(out_dir / f"{task}.tex", to_latex(display(result.table, result.metric), title))


def plot_scaling(bench_dir: Path, figures: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The scaling figures of the ``cfc-bench bench --sweep`` CSVs in ``bench_dir``.

    Drawn by ``cfc_bench.bench.cli.plot_sweep``; CSVs of a single size (no sweep) are passed over,
    unreadable ones returned with the reason.
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


# -- the README -----------------------------------------------------------------------------
def _not_judged_why(row: pd.Series) -> str:
    if not row["comparable"]:
        return row["budget"]
    return "no paper number" if math.isnan(row["paper_mean"]) else "no std to judge against"


def summary_lines(result: TaskResult) -> list[str]:
    """What reproduces and what does not, from the judged rows of one task."""
    digits = METRIC_DIGITS[result.metric]
    table = result.table
    ran = [r for _, r in table.iterrows() if r["status"] == "ran"]
    lines = []

    def listed(label: str, rows: list[pd.Series], text: Any) -> None:
        if rows:
            lines.append(f"- {label}: " + "; ".join(text(r) for r in rows))

    def value(r: pd.Series) -> str:
        ours = _mean_std(r["mean"], r["std"], digits, r["n"])
        paper = _mean_std(r["paper_mean"], r["paper_std"], digits)
        text = f"{r['model']} (ours {ours}, paper {paper}"
        if verdict(r["agrees"]) is False:  # say which way the difference goes
            better = (r["mean"] > r["paper_mean"]) == (result.metric != "mse")
            text += ", ours better" if better else ", ours worse"
        return text + ")"

    listed(
        "Reproduces (within the spread)", [r for r in ran if verdict(r["agrees"]) is True], value
    )
    listed("Does not reproduce", [r for r in ran if verdict(r["agrees"]) is False], value)

    def speedup(r: pd.Series) -> str:
        ratio, _, paired = judged_speedup(r)
        return f"over {r['model']} {_ratio(ratio)}" + (" in the timing sweep" if paired else "")

    for claim in ("reproduces", "direction only", "does not reproduce"):
        listed(
            f"CfC speed-up {claim}",
            [r for r in ran if r["speed_claim"] == claim],
            lambda r: f"{speedup(r)} (paper {_ratio(r['paper_speedup'])})",
        )
    listed(
        f"CfC speed-up not judged (machine speed differed by more than {MACHINE_TOLERANCE}x)",
        [r for r in ran if _machine_differed(r)],
        lambda r: f"{speedup(r)} ({_machine_drift(judged_speedup(r)[1])})",
    )
    listed(
        "Not judged",
        [r for r in ran if verdict(r["agrees"]) is None],
        lambda r: f"{r['model']} ({_not_judged_why(r)})",
    )
    listed(
        "Paper rows without a run",
        [r for _, r in table.iterrows() if r["status"] != "ran"],
        lambda r: r["model"] + (" (failed)" if r["status"] == "failed" else ""),
    )
    return lines


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
    """results/README.md: a summary computed from the tables, then the tables themselves."""
    from cfc_bench.config import config_names

    here = readme_path.parent

    def link(path: Path) -> str:
        return Path(os.path.relpath(path, here)).as_posix()

    ours = config_names("task")
    tasks = [*TASKS, *sorted((set(results) | set(reported.get("task", []))) - set(TASKS))]
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
            how = f"`make reproduce TASK={task}`" if task in ours else "not a task of this project"
            parts.append(f"**{task}**: no runs committed for task {task} ({how}).\n")
            continue
        lines = summary_lines(results[task])
        parts.append(f"**{task}**:\n\n" + "\n".join(lines or ["- nothing to judge yet"]) + "\n")
    parts.append(
        "## How to read the tables\n\n"
        "- *ours*: mean ± sample std over seeds (n), whichever machine each seed ran on "
        "(*device* names them all); *paper*: the paper's mean ± std (its "
        "scripts use the population std over 3–5 runs). Accuracy is in percent for every task "
        "and *ours - paper* is in the table's units.\n"
        "- *agrees*: |ours − paper| ≤ 2·sqrt(s_ours² + s_paper²) (the tolerance is shown), "
        "and at least one seed within 2·sqrt(2)·s_paper of the paper (what one seed alone "
        "needs): seeds scattered far apart, say a run that diverged in every seed, must not "
        'agree by widening the tolerance; the cell then says "no seed within ± …". '
        "With one seed s_ours is taken as the paper's std, without a paper std s_paper as "
        "ours. Only rows run exactly as their preset are judged.\n"
        "- *ours at best-val epoch* (tables of runs that test the last epoch and have a "
        "validation split): the test score of the weights of the best validation epoch, "
        "the protocol of the references that restore their best checkpoint (the ODE-LSTM "
        "scripts). Shown beside the last epoch's score; *agrees* judges the latter.\n"
        "- *CfC speed-up*: the model's time per epoch over CfC's, both measured in the same "
        "sweep on the same machine, threads and training-set size, each model with its own "
        "preset (batch sizes differ as in the paper); the mean over the row's runs that "
        "have such CfC runs, never a run trained in pieces on two machines. "
        "*paper speed-up*: the paper's minutes per epoch over CfC's, figures copied from "
        "papers that used other GPUs. A speed claim "
        "reproduces when both ratios are on the same side of 1 and within a factor of 2; "
        "it is judged for REDUCED rows too (fewer epochs or sequences leave the time per "
        "step as it is), not for CHANGED ones. "
        "Runs of one sweep folder may be days apart and this machine's speed drifts: where "
        "both sides timed the fixed probe workload (`time/probe_ms` in metrics.json) "
        "and the probes differ by more than 1.25x, the cell shows the drift and the ratio "
        "is not judged; runs without a probe may hold such drift unseen.\n"
        f"- *CfC speed-up, timing sweep* (tables of tasks with a `{TIMING_FOLDER}/<task>` "
        "folder of runs, `make retime TASK=<task>`): the same ratio from every preset "
        "trained for a few epochs back to back, so that all models of the task are timed "
        "within minutes of each other. Where a row has it, its speed claim is judged on it; "
        "those runs' scores are not shown (a few epochs score nothing).\n"
        "- *budget*: `as preset` or what differs from the preset: REDUCED (fewer epochs, "
        "`task.train_limit`, a smoke data subset) or CHANGED (any other setting).\n"
    )
    for task in tasks:
        if task not in results:
            continue
        result = results[task]
        parts.append(result.markdown.replace("## ", "## Table: ", 1))
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


# -- command line ---------------------------------------------------------------------------
DEFAULT_REPORTED = Path("results/paper/reported.csv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cfc-bench tables", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        default=[Path("outputs")],
        help="folders searched for metrics.json",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("results/tables"), help="folder for the tables"
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
    args = parser.parse_args(argv)
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
    for path, reason in gathered.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    results = task_results(gathered, reported)
    write_tables(results, args.out)
    if not results:
        print(f"no metrics.json found below {' '.join(map(str, args.runs))}", file=sys.stderr)
    for note in failed_only(gathered, results).values():
        print(note)
    figures: dict[str, Path] = {}
    scaling: list[Path] = []
    if args.figures is not None:
        from cfc_bench.report.plots import plot_metric_vs_time

        for task, result in results.items():
            figures[task] = plot_metric_vs_time(
                result.table, task, METRIC_LABEL[result.metric], args.figures
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
        print(result.markdown)
    if results:
        print(f"tables written to {args.out}/")
    return 0
