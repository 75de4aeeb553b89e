"""The manifest: what was installed where, with every file's size and SHA-256.

``<root>/manifest.json`` holds ``{"datasets": {name: entry}}``; an entry holds
``location`` (the folder), ``source`` (official, a mirror, found in place),
``installed_at``, ``fetched`` (the downloads) and ``files`` (size and SHA-256 of every
file of the extracted layout). Writers hold an advisory lock, so concurrent installs of
different datasets do not lose each other's entries. :func:`verify` re-hashes a dataset
against its entry and the published digests (``cfc-bench data verify``).
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cfc_bench.data.config import DataConfig, candidates, data_root, how_to_get
from cfc_bench.data.datasets import Dataset
from cfc_bench.data.download import file_digest
from cfc_bench.errors import DataError
from cfc_bench.io import write_json

MANIFEST = "manifest.json"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (other cfc-bench processes wait for it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest under data root ``root`` (empty when none was written yet)."""
    path = root / MANIFEST
    if not path.exists():
        return {"datasets": {}}
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise DataError(f"{path} is not valid JSON ({err}); delete it and download again") from err


def record(root: Path, name: str, entry: dict[str, Any]) -> None:
    with locked(root / ".locks" / "manifest"):
        manifest = read_manifest(root)
        manifest["datasets"][name] = entry
        write_json(root / MANIFEST, manifest)


def entry_of(root: Path, name: str) -> dict[str, Any] | None:
    return read_manifest(root)["datasets"].get(name)


def is_about(entry: dict[str, Any] | None, folder: Path) -> bool:
    """Whether manifest ``entry`` is about ``folder``."""
    return entry is not None and Path(entry["location"]) == folder.resolve()


def changed_size(folder: Path, entry: dict[str, Any]) -> list[str]:
    """Recorded files that are missing or changed size (cheap: no hashing)."""
    changed = []
    for rel, file in entry["files"].items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != file["size"]:
            changed.append(rel)
    return changed


_digests: dict[tuple[Path, int, int], str] = {}  # (path, size, mtime_ns) -> SHA-256


def sha256(path: Path) -> str:
    """A file's SHA-256, hashed once per process while its size and mtime stay the same."""
    stat = path.stat()
    key = (path.resolve(), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        _digests[key] = file_digest(path)
    return _digests[key]


def differing(folder: Path, rels: Sequence[str], entry: dict[str, Any]) -> list[str]:
    """Those of ``rels`` whose content in ``folder`` is not what ``entry`` recorded
    (missing, unrecorded or another SHA-256)."""
    files = entry["files"]
    return [
        rel
        for rel in rels
        if rel not in files
        or not (folder / rel).is_file()
        or sha256(folder / rel) != files[rel]["sha256"]
    ]


def new_entry(
    dataset: Dataset, folder: Path, source: str, fetched: dict[str, Any] | None = None
) -> dict[str, Any]:
    files = {}
    for rel in tqdm(dataset.layout(folder), desc=f"hashing {dataset.name}", disable=None):
        path = folder / rel
        files[rel] = {"size": path.stat().st_size, "sha256": sha256(path)}
    return {
        "location": str(folder.resolve()),
        "source": source,
        "installed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fetched": fetched or {},
        "files": files,
    }


@dataclass
class Verification:
    dataset: str
    folder: Path
    checked: int  # files hashed
    problems: list[str]
    recorded: dict[str, Any] | None  # the manifest entry the files were compared with

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(dataset: Dataset, cfg: DataConfig) -> Verification:
    """Re-hash the dataset's files and compare them with the manifest and published digests."""
    entry = entry_of(data_root(cfg), dataset.name)
    places = candidates(dataset.name, cfg, entry)
    folder = next((f for f in places if f.is_dir()), None)
    if folder is None:
        looked = ", ".join(map(str, places))
        raise DataError(
            f"dataset '{dataset.name}' is not installed (looked in {looked}). "
            + how_to_get(dataset.name, cfg)
        )
    if not is_about(entry, folder):
        entry = None
    problems, checked = [], 0
    if entry is None:
        problems += [f"{rel}: missing" for rel in dataset.missing(folder)]
        problems.append(
            f"no digests recorded for {folder}: `cfc-bench data download {dataset.name}` "
            "(with the same --root/--mirror) checks and records them"
        )
    else:
        for rel, file in tqdm(entry["files"].items(), desc=dataset.name, disable=None):
            path = folder / rel
            if not path.is_file():
                problems.append(f"{rel}: missing")
                continue
            checked += 1
            if (found := file_digest(path)) != file["sha256"]:
                problems.append(f"{rel}: sha256 {found}, recorded {file['sha256']}")
    for rel, digest in dataset.published().items():
        path = folder / rel
        if path.is_file() and (found := file_digest(path, digest.algorithm)) != digest.value:
            problems.append(f"{rel}: {digest.algorithm} {found}, published {digest.value}")
    return Verification(dataset.name, folder, checked, problems, entry)
