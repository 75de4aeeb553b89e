"""`cfc-bench data info`: build a task as `cfc-bench train` would and describe its data.

Everything is computed from the built :class:`~cfc_bench.tasks.base.Task`, so it works
for any task: split sizes, feature count, sequence lengths (valid steps per sequence),
elapsed-time spread, class balance (or the spread of regression targets), and the
dataset folders the task read, with their file count and size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cfc_bench.data.config import DataConfig, data_root
from cfc_bench.data.datasets import TASK_DATASETS
from cfc_bench.data.manifest import entry_of, is_about
from cfc_bench.data.store import locate, recording_use
from cfc_bench.metrics import IGNORE, MSE

if TYPE_CHECKING:  # tasks import the data package, never the other way round
    from cfc_bench.tasks.base import Task


def build_task(task: str, overrides: Sequence[str], cfg: DataConfig) -> tuple[Task, DataConfig]:
    """Compose ``task=<task>`` plus Hydra ``overrides`` and build the task.

    ``cfg``'s root and mirror, when set, take precedence over ``data.*`` overrides.
    Returns the task and the data config it was built with; raises ``ValueError`` when
    the task or an override does not compose.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from cfc_bench.config import compose

    try:
        run = compose([f"task={task}", *overrides])
    except (HydraException, OmegaConfBaseException) as err:
        raise ValueError(f"task={task} {' '.join(overrides)}: {err}") from None
    run.data.root = cfg.root or run.data.root
    run.data.mirror = cfg.mirror or run.data.mirror
    return run.task.build(run.data), run.data


def data_info(task: str, overrides: Sequence[str], cfg: DataConfig) -> dict[str, Any]:
    """:func:`describe` of the built task, plus ``data``: the dataset folders it read."""
    with recording_use() as used:
        built, data = build_task(task, overrides, cfg)
    for name in TASK_DATASETS.get(task, ()):  # a task that read a cache only: still shown
        if name not in used and (folder := locate(name, data)) is not None:
            used[name] = folder
    folders = {name: describe_folder(name, folder, data) for name, folder in used.items()}
    return {**describe(built), "data_root": str(data_root(data)), "data": folders}


def _stats(values: torch.Tensor) -> dict[str, float]:
    v = values.double().flatten().cpu().numpy()
    if v.size == 0:
        return {}
    return {
        "min": float(v.min()),
        "median": float(np.median(v)),
        "mean": float(v.mean()),
        "max": float(v.max()),
    }


def describe(task: Task) -> dict[str, Any]:
    """Split sizes, sequence lengths, elapsed times and class balance (or target spread)."""
    splits = {}
    for split, data in task.splits.items():
        valid = data.mask.bool()
        row: dict[str, Any] = {
            "sequences": len(data),
            "padded_steps": data.x.shape[1],
            "length": _stats(valid.sum(1)),
            "elapsed": _stats(data.dt[valid]),
        }
        targets = data.y[valid] if task.per_step else data.y
        if task.metric is MSE:
            row["targets"] = _stats(targets) | {"std": float(targets.double().std())}
        else:
            known = targets[targets != IGNORE].long()
            counts = torch.bincount(known, minlength=task.io.output_size)
            row["classes"] = {str(c): int(n) for c, n in enumerate(counts)}
            row["unlabelled"] = int((targets == IGNORE).sum())
        splits[split] = row
    return {
        "task": task.name,
        "metric": task.metric.name,
        "per_step": task.per_step,
        "inputs": task.io.input_size,
        "outputs": task.io.output_size,
        "values_with_mask": task.io.values_with_mask,
        "splits": splits,
        "notes": dict(task.notes),
    }


def describe_folder(name: str, folder: Path, cfg: DataConfig) -> dict[str, Any]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    entry = entry_of(data_root(cfg), name)
    entry = entry if is_about(entry, folder) else None
    return {
        "folder": str(folder),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "recorded": entry["installed_at"] if entry else None,
        "source": entry["source"] if entry else None,
    }


def _spread(stats: dict[str, float], digits: str) -> str:
    if not stats:
        return "-"
    return " ".join(f"{k} {stats[k]:{digits}}" for k in ("min", "median", "mean", "max"))


def format_info(info: dict[str, Any]) -> str:
    kind = "per-step" if info["per_step"] else "per-sequence"
    inputs = f"{info['inputs']}" + (" (values + observed mask)" if info["values_with_mask"] else "")
    lines = [
        f"task {info['task']}: {kind} {info['metric']}, {inputs} inputs, "
        f"{info['outputs']} outputs; data root {info['data_root']}"
    ]
    for name, f in info["data"].items():
        origin = (
            f"digests recorded {f['recorded']} ({f['source']})"
            if f["recorded"]
            else "no digests recorded"
        )
        lines.append(
            f"data {name}: {f['folder']}: {f['files']:,} file{'s' if f['files'] != 1 else ''}, "
            f"{f['bytes'] / 2**20:,.1f} MiB; {origin}"
        )
    for split, s in info["splits"].items():
        lines.append(f"{split}: {s['sequences']:,} sequences, padded to {s['padded_steps']} steps")
        lines.append(f"  valid steps per sequence: {_spread(s['length'], '.4g')}")
        lines.append(f"  elapsed time per step:    {_spread(s['elapsed'], '.4g')}")
        if "classes" in s:
            total = sum(s["classes"].values()) or 1
            balance = ", ".join(
                f"{c}: {n:,} ({100 * n / total:.1f}%)" for c, n in s["classes"].items()
            )
            unlabelled = f"; unlabelled: {s['unlabelled']:,}" if s["unlabelled"] else ""
            lines.append(f"  classes: {balance}{unlabelled}")
        else:
            targets = s["targets"]
            std = f", std {targets['std']:.4g}" if targets else ""
            lines.append(f"  targets: {_spread(targets, '.4g')}{std}")
    lines += [f"note {k}: {v}" for k, v in info["notes"].items()]
    return "\n".join(lines)
