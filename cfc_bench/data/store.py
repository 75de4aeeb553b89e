"""Finding a dataset's files for a task, and what the preprocessing cache keys on.

A task asks :func:`dataset_dir` for the folder holding the files it reads, and reads them
inside :func:`reading`, which turns any failure into a :class:`DataError` naming the file
and what to do. Before using a preprocessed cache (:mod:`cfc_bench.data.cache`) it asks
:func:`raw_identity` what those files are, and puts the answer into the cache key: a
cache then holds tensors of exactly these files, and files that changed are read (and
validated) afresh.

Identity is content: the SHA-256 of every file the task reads, and the source the
manifest recorded. For a recorded folder the files are re-hashed and must match the
record; the hashing costs about a second per 100 MB, once per process.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cfc_bench.data.config import (
    DataConfig,
    candidates,
    data_root,
    how_to_get,
    local_mirror,
)
from cfc_bench.data.datasets import DATASETS
from cfc_bench.data.install import install
from cfc_bench.data.manifest import changed_size, differing, entry_of, is_about, sha256
from cfc_bench.errors import DataError

log = logging.getLogger(__name__)

_used: dict[str, Path] | None = None  # see recording_use


@contextmanager
def recording_use() -> Iterator[dict[str, Path]]:
    """Collect, by dataset name, the folders :func:`dataset_dir` hands out inside the block."""
    global _used
    _used = used = {}
    try:
        yield used
    finally:
        _used = None


def _use(name: str, folder: Path) -> Path:
    if _used is not None:
        _used[name] = folder
    return folder


def dataset_dir(
    name: str, required: Sequence[str], cfg: DataConfig, install_missing: bool = True
) -> Path:
    """The folder holding dataset ``name`` with every path in ``required`` present in it.

    A folder recorded in the manifest must also still hold every recorded file at its
    recorded size, and a mirror folder configured beside it must hold the same files
    under ``required`` (else this reports the difference rather than silently read the
    installed copy). A dataset found nowhere is installed first (from the mirror, else its
    official source); without network that fails with a message naming the expected
    folder, the URL and the mirror option; ``install_missing=False`` only looks.
    """
    entry = entry_of(data_root(cfg), name)
    places = candidates(name, cfg, entry)
    for folder in places:
        if all((folder / rel).exists() for rel in required):
            if is_about(entry, folder):
                if changed := changed_size(folder, entry):
                    raise _not_installed(name, folder, changed, len(entry["files"]), "changed size")
                _check_mirror(name, required, folder, entry, cfg)
            return _use(name, folder)
    looked = " or ".join(str(folder / required[0]) for folder in places)
    if install_missing and name in DATASETS:  # fetch it, as `cfc-bench data download` would
        log.info("dataset '%s' not found in %s: installing it", name, data_root(cfg))
        try:
            folder = install(DATASETS[name], cfg)
        except DataError as err:
            raise DataError(f"dataset '{name}' not found: expected {looked}; {err}") from None
        if all((folder / rel).exists() for rel in required):
            return _use(name, folder)
    raise DataError(f"dataset '{name}' not found: expected {looked}. {how_to_get(name, cfg)}")


def _not_installed(name: str, folder: Path, changed: list[str], total: int, how: str) -> DataError:
    return DataError(
        f"dataset '{name}' in {folder} is not what was installed: {len(changed)} of {total} "
        f"recorded files are missing or {how} (e.g. {changed[0]}). Check it with "
        f"`cfc-bench data verify {name}` and fetch it again with `cfc-bench data download {name}`."
    )


def _check_mirror(
    name: str, required: Sequence[str], folder: Path, entry: dict[str, Any], cfg: DataConfig
) -> None:
    """Refuse a configured mirror folder whose files differ from the installed ones."""
    mirror = local_mirror(name, cfg)
    if mirror is None or mirror.resolve() == folder.resolve():
        return
    if not all((mirror / rel).exists() for rel in required):
        return
    recorded = [rel for rel in entry["files"] if _under(rel, required)]
    rels = sorted({*files_under(mirror, required), *recorded})
    if differ := differing(mirror, rels, entry):
        command = f"cfc-bench data download {name} --mirror {mirror.parent}" + (
            f" --root {cfg.root}" if cfg.root else ""
        )
        raise DataError(
            f"the mirror folder {mirror} holds dataset '{name}' with {len(differ)} of "
            f"{len(rels)} files different from the copy installed in {folder} (recorded "
            f"{entry['installed_at']}, source: {entry['source']}), e.g. {differ[0]}. To train "
            f"on the installed copy, leave out the mirror (data.mirror, --mirror, "
            f"CFC_BENCH_DATA_MIRROR); to install the mirror's files instead, run `{command}`."
        )


def _under(rel: str, required: Sequence[str]) -> bool:
    return any(rel == r or rel.startswith(f"{r.rstrip('/')}/") for r in required)


def files_under(folder: Path, required: Sequence[str]) -> list[str]:
    """The files ``required`` names in ``folder``: a file itself, a folder all it holds."""
    rels = []
    for rel in required:
        path = folder / rel
        if path.is_dir():
            rels += sorted(p.relative_to(folder).as_posix() for p in path.rglob("*") if p.is_file())
        else:
            rels.append(rel)
    return rels


def raw_identity(
    name: str, folder: Path, required: Sequence[str], cfg: DataConfig
) -> dict[str, Any]:
    """What the files ``required`` names in dataset ``name``'s ``folder`` are: the source
    the manifest recorded and the SHA-256 over every file's path and SHA-256.

    Part of a preprocessing cache's key. In a recorded folder every file must still have
    its recorded digest, else this raises (``cfc-bench data verify`` shows the rest).
    """
    rels = files_under(folder, required)
    entry = entry_of(data_root(cfg), name)
    if is_about(entry, folder):
        assert entry is not None
        if changed := differing(folder, rels, entry):
            raise _not_installed(name, folder, changed, len(rels), "have other contents")
        source = entry["source"]
    else:
        source = f"unrecorded folder {folder.resolve()}"
    digests = [(rel, sha256(folder / rel)) for rel in rels]
    blob = json.dumps(digests).encode()
    return {"dataset": name, "source": source, "sha256": hashlib.sha256(blob).hexdigest()}


def locate(name: str, cfg: DataConfig) -> Path | None:
    """The first existing folder where dataset ``name`` may be, without checking files."""
    places = candidates(name, cfg, entry_of(data_root(cfg), name))
    return next((f for f in places if f.is_dir()), None)


@contextmanager
def reading(path: Path, dataset: str) -> Iterator[None]:
    """Turn any failure to read or parse ``path`` inside the block into a :class:`DataError`
    that names the file and what to do (a :class:`DataError` passes unchanged)."""
    try:
        yield
    except DataError:
        raise
    except Exception as err:  # any parser's failure on damaged bytes means the same here
        raise DataError(
            f"{path} could not be read ({type(err).__name__}: {err}): the file is damaged or "
            f"not what dataset '{dataset}' holds. Check it with `cfc-bench data verify "
            f"{dataset}` and fetch it again with `cfc-bench data download {dataset}` (from a "
            "copy: --mirror DIR_OR_URL)."
        ) from err
