"""Where data lives: the data config and the folders it implies.

Layout under the data root (``data.root``, else ``$CFC_BENCH_DATA``, else
``~/.cache/cfc-bench``)::

    <root>/<dataset>/<files as published, archives extracted>
    <root>/manifest.json          what was installed where, with every file's SHA-256
    <root>/cache/<name>-<hash>.pt preprocessed tensors (:mod:`cfc_bench.data.cache`)
    <root>/quarantine/<dataset>/  files that failed a digest check, kept for inspection
    <root>/.downloads, .staging   transfers and unpacking in progress (never read by tasks)
    <root>/.locks/                one lock file per dataset, one for the manifest

A mirror (``--mirror``, ``data.mirror`` or ``$CFC_BENCH_DATA_MIRROR``) holds datasets in
that same extracted layout, ``<mirror>/<dataset>/<files>``. A mirror folder is used in
place, never copied; a mirror URL is downloaded file by file into the data root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfc_bench.data.datasets import DATASETS


@dataclass
class DataConfig:
    """Where raw files and preprocessed caches live (used by tasks that read files)."""

    root: str | None = None  # default: $CFC_BENCH_DATA or the per-user cache folder
    mirror: str | None = None  # a folder or URL laid out as <mirror>/<dataset>/<files>


def data_root(cfg: DataConfig) -> Path:
    root = cfg.root or os.environ.get("CFC_BENCH_DATA") or Path.home() / ".cache" / "cfc-bench"
    return Path(root).expanduser()


def mirror_of(cfg: DataConfig) -> str | None:
    """The configured mirror: a URL (``scheme://...``) or a folder; ``file://`` is a folder."""
    mirror = cfg.mirror or os.environ.get("CFC_BENCH_DATA_MIRROR") or None
    if mirror and mirror.startswith("file://"):
        return mirror.removeprefix("file://")
    return mirror


def is_url(mirror: str) -> bool:
    return "://" in mirror


def local_mirror(name: str, cfg: DataConfig) -> Path | None:
    """Dataset ``name``'s folder in the configured mirror, if the mirror is a folder."""
    mirror = mirror_of(cfg)
    return Path(mirror).expanduser() / name if mirror and not is_url(mirror) else None


def candidates(name: str, cfg: DataConfig, entry: dict[str, Any] | None) -> list[Path]:
    """Where dataset ``name`` may be, in this order: the location its manifest ``entry``
    records, the data root, the mirror folder."""
    found = [Path(entry["location"])] if entry else []
    found.append(data_root(cfg) / name)
    if (local := local_mirror(name, cfg)) is not None:
        found.append(local)
    unique: list[Path] = []
    for folder in found:
        if all(folder.resolve() != other.resolve() for other in unique):
            unique.append(folder)
    return unique


def how_to_get(name: str, cfg: DataConfig) -> str:
    """What a user runs to install dataset ``name``, with or without network."""
    dataset = DATASETS.get(name)
    urls = ", ".join(s.url for s in dataset.sources) if dataset else ""
    command = f"cfc-bench data download {name}" + (f" --root {cfg.root}" if cfg.root else "")
    return (
        (f"Fetch it with `{command}` (from {urls} into {data_root(cfg)}). " if urls else "")
        + f"Without network, `{command} --mirror DIR_OR_URL` installs it from a copy laid out "
        f"as <mirror>/{name}/<files>; `cfc-bench train` takes the same as data.mirror=DIR_OR_URL "
        "(or CFC_BENCH_DATA_MIRROR)."
    )
