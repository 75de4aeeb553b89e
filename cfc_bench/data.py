"""Where raw data and preprocessed caches live, and how a task finds them.

Layout under the data root (``data.root``, else ``$CFC_BENCH_DATA``, else
``~/.cache/cfc-bench``): ``<root>/<dataset>/<files as published>`` for raw files and
``<root>/cache/<name>-<hash>.pt`` for preprocessed tensors. A mirror (``data.mirror`` or
``$CFC_BENCH_DATA_MIRROR``) is a folder laid out as ``<mirror>/<dataset>/<files>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cfc_bench.io import atomic_write
from cfc_bench.tasks.base import DataConfig

log = logging.getLogger(__name__)


class DataError(RuntimeError):
    """Raw data missing or damaged; the message says what was expected and how to fix it."""


def data_root(cfg: DataConfig) -> Path:
    root = cfg.root or os.environ.get("CFC_BENCH_DATA") or Path.home() / ".cache" / "cfc-bench"
    return Path(root).expanduser()


def mirror_of(cfg: DataConfig) -> str | None:
    return cfg.mirror or os.environ.get("CFC_BENCH_DATA_MIRROR") or None


def dataset_dir(name: str, required: list[str], cfg: DataConfig) -> Path:
    """The folder holding dataset ``name`` with every path in ``required`` present in it."""
    candidates = [data_root(cfg) / name]
    mirror = mirror_of(cfg)
    if mirror and "://" not in mirror:
        candidates.append(Path(mirror).expanduser() / name)
    for folder in candidates:
        if all((folder / rel).exists() for rel in required):
            return folder
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(
        f"dataset '{name}' not found (looked for {required[0]} in {looked}). Download it with "
        f"`cfc-bench data download {name}`, or point data.mirror=DIR (or CFC_BENCH_DATA_MIRROR) "
        f"at a folder holding {name}/."
    )


def cache_key(name: str, params: dict[str, Any]) -> str:
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return f"{name}-{hashlib.sha256(blob).hexdigest()[:16]}"


def cached(name: str, params: dict[str, Any], build: Callable[[], Any], cfg: DataConfig) -> Any:
    """``build()``'s result, stored under the data root keyed by ``params`` (atomically)."""
    path = data_root(cfg) / "cache" / f"{cache_key(name, params)}.pt"
    if path.exists():
        log.info("loading cached %s from %s", name, path)
        return torch.load(path, weights_only=False)
    value = build()
    atomic_write(path, lambda f: torch.save(value, f))
    log.info("cached %s in %s", name, path)
    return value
