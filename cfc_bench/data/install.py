"""Installing a dataset (``cfc-bench data download``, or a task that finds none).

:func:`install` fetches a dataset's official files (registry:
:mod:`cfc_bench.data.datasets`), checks published digests (MNIST, the UCI file), unpacks
the archives and records every file's SHA-256 in the manifest; the dataset folder only
appears once all of that succeeded, so a task never sees half-built data. A complete
folder in the data root or a mirror folder is recorded in place instead of fetched; a
mirror URL is fetched file by file. Transfers, digests and archives are
:mod:`cfc_bench.data.download`.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tqdm import tqdm

from cfc_bench.data.config import DataConfig, candidates, data_root, local_mirror, mirror_of
from cfc_bench.data.datasets import Dataset
from cfc_bench.data.download import extract, fetch, file_digest, quarantine
from cfc_bench.data.manifest import (
    changed_size,
    differing,
    entry_of,
    is_about,
    locked,
    new_entry,
    record,
)
from cfc_bench.errors import DataError

log = logging.getLogger(__name__)

MIRROR_THREADS = 8  # parallel transfers when a URL mirror serves many small files


def install(dataset: Dataset, cfg: DataConfig) -> Path:
    """Make ``dataset`` available and recorded; returns its folder.

    In order: a recorded folder whose files all still have their recorded SHA-256 is
    kept, unless the mirror folder holds the dataset with other files (then the mirror is
    what was asked for); a complete folder in the mirror or the data root is adopted in
    place (published digests checked, SHA-256 recorded), except a data-root copy whose
    files changed since they were recorded; otherwise the files come from the mirror URL,
    or the official sources, and a previous copy in the data root goes to quarantine.
    """
    root = data_root(cfg)
    mirror = mirror_of(cfg)
    in_mirror = local_mirror(dataset.name, cfg)
    with locked(root / ".locks" / dataset.name):
        entry = entry_of(root, dataset.name)
        damaged = None  # the recorded folder, if its files are no longer what was recorded
        for folder in candidates(dataset.name, cfg, entry):
            if not is_about(entry, folder):
                continue
            assert entry is not None
            if changed_size(folder, entry) or differing(folder, list(entry["files"]), entry):
                damaged = folder.resolve()
            elif not _mirror_differs(dataset, in_mirror, folder, entry):
                log.info("%s: already installed in %s", dataset.name, folder)
                return folder
        ours = root / dataset.name
        for folder in (in_mirror, ours):
            if folder is None or not folder.is_dir() or dataset.missing(folder):
                continue
            if folder == ours and folder.resolve() == damaged:
                continue  # fetched afresh below; the damaged copy then goes to quarantine
            return _adopt(dataset, folder, root)
        if in_mirror is not None:
            missing = dataset.missing(in_mirror) if in_mirror.is_dir() else []
            raise DataError(
                f"the mirror folder {in_mirror} does not hold dataset '{dataset.name}'"
                + (
                    f": {len(missing)} of its files are missing, e.g. {missing[0]}"
                    if missing
                    else ""
                )
                + f". A mirror holds the extracted layout, <mirror>/{dataset.name}/<files>"
                + _mirror_contents(in_mirror.parent)
            )
        if mirror is not None:
            staging, fetched = _fetch_from_mirror(dataset, mirror, root)
        else:
            staging, fetched = _fetch_official(dataset, root)
        if missing := dataset.missing(staging):
            raise DataError(
                f"dataset '{dataset.name}' fetched from {mirror or 'its official source'} "
                f"lacks {len(missing)} files of its layout, e.g. {missing[0]}"
            )
        final = root / dataset.name
        if final.exists():
            moved = quarantine(final, root / "quarantine")
            log.warning("%s: moved the previous, incomplete copy to %s", dataset.name, moved)
        os.replace(staging, final)
        record(root, dataset.name, new_entry(dataset, final, mirror or "official", fetched))
        shutil.rmtree(root / ".downloads" / dataset.name, ignore_errors=True)
        for scratch in (root / ".downloads", root / ".staging"):
            if scratch.is_dir() and not any(scratch.iterdir()):
                scratch.rmdir()
        log.info("%s: installed in %s", dataset.name, final)
        return final


def _mirror_differs(
    dataset: Dataset, in_mirror: Path | None, folder: Path, entry: dict[str, Any]
) -> bool:
    """Whether a complete mirror folder other than the recorded ``folder`` holds other files."""
    if in_mirror is None or not in_mirror.is_dir() or in_mirror.resolve() == folder.resolve():
        return False
    return not dataset.missing(in_mirror) and bool(
        differing(in_mirror, dataset.layout(in_mirror), entry)
    )


def _mirror_contents(mirror: Path) -> str:
    if not mirror.is_dir():
        return f"; {mirror} does not exist."
    held = sorted(p.name for p in mirror.iterdir() if p.is_dir())
    return f"; {mirror} holds: {', '.join(held) or 'no dataset folders'}."


def _adopt(dataset: Dataset, folder: Path, root: Path) -> Path:
    """Record a complete folder found in place, after checking its published digests.

    A damaged file in the data root is moved to quarantine; a mirror's is left alone.
    """
    ours = folder.resolve().is_relative_to(root.resolve())
    for rel, digest in dataset.published().items():
        path = folder / rel
        if (found := file_digest(path, digest.algorithm)) != digest.value:
            where = f"{path} is left in place (a mirror is read only)"
            if ours:
                where = f"it was moved to {quarantine(path, root / 'quarantine' / dataset.name)}"
            raise DataError(
                f"{path} does not have the published {digest.algorithm} digest: expected "
                f"{digest.value}, found {found}; {where}. Nothing was recorded: download it "
                "again, or use another mirror."
            )
    log.info("%s: using %s in place; recording its digests", dataset.name, folder)
    source = "found in the data root" if ours else f"mirror folder {folder}"
    record(root, dataset.name, new_entry(dataset, folder, source))
    return folder


def _offline_hint(dataset: Dataset, root: Path) -> str:
    return (
        f"Dataset '{dataset.name}' is expected in {root / dataset.name}; without network, "
        f"pass --mirror DIR_OR_URL (data.mirror=..., or CFC_BENCH_DATA_MIRROR) naming a copy "
        f"laid out as <mirror>/{dataset.name}/<files>."
    )


def _fetch_official(dataset: Dataset, root: Path) -> tuple[Path, dict[str, Any]]:
    """Download the official files, check them, and unpack them into a staging folder."""
    if not dataset.sources:
        raise DataError(
            f"dataset '{dataset.name}' has no official download: it exists only in mirrors. "
            f"Pass --mirror DIR_OR_URL naming a copy laid out as <mirror>/{dataset.name}/<files>."
        )
    downloads = root / ".downloads" / dataset.name
    fetched = {}
    for source in dataset.sources:
        path = downloads / source.filename
        if not path.exists():  # a complete earlier download is reused (.part files resume)
            log.info("%s: fetching %s", dataset.name, source.url)
            try:
                fetch(source.url, path, source.digest, root / "quarantine" / dataset.name)
            except DataError as err:
                raise DataError(f"{err}. {_offline_hint(dataset, root)}") from None
        fetched[source.filename] = {
            "url": source.url,
            "size": path.stat().st_size,
            "sha256": file_digest(path),
            "published": str(source.digest) if source.digest else None,
        }
    staging = root / ".staging" / f"{dataset.name}-official"
    shutil.rmtree(staging, ignore_errors=True)  # an unpacking that stopped half-way
    staging.mkdir(parents=True)
    for source in dataset.sources:
        path = downloads / source.filename
        if source.unpack:
            log.info("%s: unpacking %s", dataset.name, source.filename)
            extract(path, staging, source.unpack)
        else:
            shutil.copyfile(path, staging / source.filename)
    return staging, fetched


def _fetch_from_mirror(dataset: Dataset, mirror: str, root: Path) -> tuple[Path, dict[str, Any]]:
    """Download the extracted layout from a mirror URL, file by file, into staging.

    Files already in staging are complete (a transfer only renames its ``.part`` file
    when done), so an interrupted installation picks up where it stopped.
    """
    staging = root / ".staging" / f"{dataset.name}-mirror"
    base = f"{mirror.rstrip('/')}/{quote(dataset.name)}"
    published = dataset.published()
    quarantine_dir = root / "quarantine" / dataset.name

    def get(rel: str) -> None:
        dest = staging / rel
        if not dest.exists():
            fetch(f"{base}/{quote(rel)}", dest, published.get(rel), quarantine_dir, progress=False)

    def get_all(rels: Sequence[str]) -> None:
        pool = ThreadPoolExecutor(MIRROR_THREADS)
        try:
            with tqdm(total=len(rels), desc=dataset.name, unit="file", disable=None) as bar:
                for _ in pool.map(get, rels):
                    bar.update()
        except DataError as err:
            raise DataError(f"{err}. {_offline_hint(dataset, root)}") from None
        finally:  # after a failure, start no more transfers
            pool.shutdown(wait=True, cancel_futures=True)

    log.info("%s: fetching from %s", dataset.name, base)
    get_all(dataset.files)  # first: they list the rest
    get_all([f for f in dataset.layout(staging) if f not in dataset.files])
    return staging, {"mirror": base}
