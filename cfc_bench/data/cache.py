"""Preprocessed tensors, stored under ``<root>/cache/<name>-<hash>.pt``.

The key is a hash of everything the tensors depend on: the preprocessing parameters and,
for tasks that read files, the identity of those files
(:func:`cfc_bench.data.store.raw_identity`), so that other parameters or other raw files
give another cache file and a build from scratch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import torch

from cfc_bench.data.config import DataConfig, data_root
from cfc_bench.io import atomic_write

log = logging.getLogger(__name__)


def cache_key(name: str, params: dict[str, Any]) -> str:
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return f"{name}-{hashlib.sha256(blob).hexdigest()[:16]}"


def cached(name: str, params: dict[str, Any], build: Callable[[], Any], cfg: DataConfig) -> Any:
    """``build()``'s result, stored under the data root keyed by ``params`` (atomically).

    Different ``params`` give a different file, so changing any of them rebuilds; an
    unreadable cache file is rebuilt and replaced. Nothing is stored if ``build`` raises.
    """
    path = data_root(cfg) / "cache" / f"{cache_key(name, params)}.pt"
    if path.exists():
        try:
            value = torch.load(path, weights_only=False)
        except Exception as err:  # a cache is disposable: any damage means rebuild it
            log.warning("cache %s is unreadable (%s); rebuilding it", path, err)
        else:
            log.info("loading cached %s from %s", name, path)
            return value
    value = build()
    atomic_write(path, lambda f: torch.save(value, f))
    log.info("cached %s in %s", name, path)
    return value
