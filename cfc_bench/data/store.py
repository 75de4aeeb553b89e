"""Where raw data and preprocessed caches live, how they get there, and `cfc-bench data`.

Layout under the data root (``data.root``, else ``$CFC_BENCH_DATA``, else
``~/.cache/cfc-bench``)::

    <root>/<dataset>/<files as published, archives extracted>
    <root>/manifest.json          what was installed where, with every file's SHA-256
    <root>/cache/<name>-<hash>.pt preprocessed tensors (see :func:`cached`)
    <root>/quarantine/<dataset>/  files that failed a digest check, kept for inspection
    <root>/.downloads, .staging   transfers and unpacking in progress (never read by tasks)
    <root>/.locks/                one lock file per dataset, one for the manifest

A mirror (``--mirror``, ``data.mirror`` or ``$CFC_BENCH_DATA_MIRROR``) holds datasets in
that same extracted layout, ``<mirror>/<dataset>/<files>``. A mirror folder is used in
place, never copied; a mirror URL is downloaded file by file into the data root.

Installing (:func:`install`, ``cfc-bench data download``) fetches a dataset's official
files (registry: :mod:`cfc_bench.data.datasets`), checks published digests (MNIST, the UCI
file), unpacks the archives and records every file's SHA-256 in the manifest; the
dataset folder only appears once all of that succeeded, so a task never sees half-built
data. A task finds its files with :func:`dataset_dir`, which refuses a recorded folder
whose files went missing or changed size; ``cfc-bench data verify`` re-hashes everything.
HTTP, digests and archive handling are in :mod:`cfc_bench.data.download`; ``cfc-bench data
info`` is :mod:`cfc_bench.data.info`.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import torch
from tqdm import tqdm

from cfc_bench.data.datasets import DATASETS, TASK_DATASETS, Dataset, datasets_for
from cfc_bench.data.download import extract, fetch, file_digest, quarantine
from cfc_bench.errors import DataError
from cfc_bench.io import atomic_write, write_json
from cfc_bench.tasks.base import DataConfig

__all__ = ["cached", "data_root", "dataset_dir", "install", "main", "verify"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MIRROR_THREADS = 8  # parallel transfers when a URL mirror serves many small files


# -- locations ------------------------------------------------------------------------------
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


def _local_mirror(name: str, cfg: DataConfig) -> Path | None:
    mirror = mirror_of(cfg)
    return Path(mirror).expanduser() / name if mirror and not is_url(mirror) else None


# -- the manifest ---------------------------------------------------------------------------
@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (other cfc-bench processes wait for it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_manifest(root: Path) -> dict[str, Any]:
    """``{"datasets": {name: entry}}``; an entry holds ``location``, ``source``,
    ``installed_at``, ``fetched`` (the downloads) and ``files`` (size and SHA-256 of
    every file of the layout)."""
    path = root / MANIFEST
    if not path.exists():
        return {"datasets": {}}
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise DataError(f"{path} is not valid JSON ({err}); delete it and download again") from err


def _record(root: Path, name: str, entry: dict[str, Any]) -> None:
    with _locked(root / ".locks" / "manifest"):
        manifest = read_manifest(root)
        manifest["datasets"][name] = entry
        write_json(root / MANIFEST, manifest)


def _entry(root: Path, name: str) -> dict[str, Any] | None:
    return read_manifest(root)["datasets"].get(name)


def recorded(name: str, folder: Path, cfg: DataConfig) -> dict[str, Any] | None:
    """The manifest entry of dataset ``name`` if it is about ``folder``."""
    entry = _entry(data_root(cfg), name)
    return entry if _records(entry, folder) else None


def _records(entry: dict[str, Any] | None, folder: Path) -> bool:
    """Whether manifest ``entry`` is about ``folder``."""
    return entry is not None and Path(entry["location"]) == folder.resolve()


def _changed(folder: Path, entry: dict[str, Any]) -> list[str]:
    """Recorded files that are missing or changed size (cheap: no hashing)."""
    changed = []
    for rel, record in entry["files"].items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != record["size"]:
            changed.append(rel)
    return changed


# -- finding data ---------------------------------------------------------------------------
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


def _candidates(name: str, cfg: DataConfig, entry: dict[str, Any] | None) -> list[Path]:
    """Where dataset ``name`` may be: its recorded location, the data root, the mirror."""
    found = [Path(entry["location"])] if entry else []
    found.append(data_root(cfg) / name)
    if (local := _local_mirror(name, cfg)) is not None:
        found.append(local)
    unique: list[Path] = []
    for folder in found:
        if all(folder.resolve() != other.resolve() for other in unique):
            unique.append(folder)
    return unique


def dataset_dir(
    name: str, required: Sequence[str], cfg: DataConfig, install_missing: bool = True
) -> Path:
    """The folder holding dataset ``name`` with every path in ``required`` present in it.

    A folder recorded in the manifest must also still hold every recorded file at its
    recorded size, else this raises rather than let a task read half-built data. A dataset
    found nowhere is installed first (from the mirror, else its official source); without
    network that fails with a message naming the expected folder, the URL and the mirror
    option; ``install_missing=False`` only looks.
    """
    entry = _entry(data_root(cfg), name)
    candidates = _candidates(name, cfg, entry)
    for folder in candidates:
        if all((folder / rel).exists() for rel in required):
            if _records(entry, folder) and (changed := _changed(folder, entry)):
                raise DataError(
                    f"dataset '{name}' in {folder} is not what was installed: {len(changed)} "
                    f"of {len(entry['files'])} recorded files are missing or changed size "
                    f"(e.g. {changed[0]}). Check it with `cfc-bench data verify {name}` and "
                    f"fetch it again with `cfc-bench data download {name}`."
                )
            if _used is not None:
                _used[name] = folder
            return folder
    looked = " or ".join(str(folder / required[0]) for folder in candidates)
    if install_missing and name in DATASETS:  # fetch it, as `cfc-bench data download` would
        log.info("dataset '%s' not found in %s: installing it", name, data_root(cfg))
        try:
            folder = install(DATASETS[name], cfg)
        except DataError as err:
            raise DataError(f"dataset '{name}' not found: expected {looked}; {err}") from None
        if all((folder / rel).exists() for rel in required):
            if _used is not None:
                _used[name] = folder
            return folder
    raise DataError(f"dataset '{name}' not found: expected {looked}. {_how_to_get(name, cfg)}")


def _how_to_get(name: str, cfg: DataConfig) -> str:
    dataset = DATASETS.get(name)
    urls = ", ".join(s.url for s in dataset.sources) if dataset else ""
    command = f"cfc-bench data download {name}" + (f" --root {cfg.root}" if cfg.root else "")
    return (
        (f"Fetch it with `{command}` (from {urls} into {data_root(cfg)}). " if urls else "")
        + f"Without network, `{command} --mirror DIR_OR_URL` installs it from a copy laid out "
        f"as <mirror>/{name}/<files>; `cfc-bench train` takes the same as data.mirror=DIR_OR_URL "
        "(or CFC_BENCH_DATA_MIRROR)."
    )


def locate(name: str, cfg: DataConfig) -> Path | None:
    """The first existing folder where dataset ``name`` may be, without checking files."""
    candidates = _candidates(name, cfg, _entry(data_root(cfg), name))
    return next((f for f in candidates if f.is_dir()), None)


# -- installing -----------------------------------------------------------------------------
def install(dataset: Dataset, cfg: DataConfig) -> Path:
    """Make ``dataset`` available and recorded; returns its folder.

    In order: a recorded folder that is still intact is kept; a complete folder in the
    data root or the local mirror is adopted in place (published digests checked, SHA-256
    recorded); otherwise the files come from the mirror URL, or the official sources.
    """
    root = data_root(cfg)
    mirror = mirror_of(cfg)
    with _locked(root / ".locks" / dataset.name):
        entry = _entry(root, dataset.name)
        for folder in _candidates(dataset.name, cfg, entry):
            if _records(entry, folder) and not _changed(folder, entry):
                log.info("%s: already installed in %s", dataset.name, folder)
                return folder
        in_mirror = _local_mirror(dataset.name, cfg)
        for folder in (in_mirror, root / dataset.name):
            if folder is not None and folder.is_dir() and not _missing(dataset, folder):
                return _adopt(dataset, folder, root)
        if in_mirror is not None:
            missing = _missing(dataset, in_mirror) if in_mirror.is_dir() else []
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
        if missing := _missing(dataset, staging):
            raise DataError(
                f"dataset '{dataset.name}' fetched from {mirror or 'its official source'} "
                f"lacks {len(missing)} files of its layout, e.g. {missing[0]}"
            )
        final = root / dataset.name
        if final.exists():
            moved = quarantine(final, root / "quarantine")
            log.warning("%s: moved the previous, incomplete copy to %s", dataset.name, moved)
        os.replace(staging, final)
        _record(root, dataset.name, _new_entry(dataset, final, mirror or "official", fetched))
        shutil.rmtree(root / ".downloads" / dataset.name, ignore_errors=True)
        for scratch in (root / ".downloads", root / ".staging"):
            if scratch.is_dir() and not any(scratch.iterdir()):
                scratch.rmdir()
        log.info("%s: installed in %s", dataset.name, final)
        return final


def _missing(dataset: Dataset, folder: Path) -> list[str]:
    if any(not (folder / f).is_file() for f in dataset.files):
        return [f for f in dataset.files if not (folder / f).is_file()]
    return [f for f in dataset.layout(folder) if not (folder / f).is_file()]


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
    _record(root, dataset.name, _new_entry(dataset, folder, source))
    return folder


def _new_entry(
    dataset: Dataset, folder: Path, source: str, fetched: dict[str, Any] | None = None
) -> dict[str, Any]:
    files = {}
    for rel in tqdm(dataset.layout(folder), desc=f"hashing {dataset.name}", disable=None):
        path = folder / rel
        files[rel] = {"size": path.stat().st_size, "sha256": file_digest(path)}
    return {
        "location": str(folder.resolve()),
        "source": source,
        "installed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fetched": fetched or {},
        "files": files,
    }


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


# -- verifying ------------------------------------------------------------------------------
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
    root = data_root(cfg)
    entry = _entry(root, dataset.name)
    candidates = _candidates(dataset.name, cfg, entry)
    folder = next((f for f in candidates if f.is_dir()), None)
    if folder is None:
        looked = ", ".join(map(str, candidates))
        raise DataError(
            f"dataset '{dataset.name}' is not installed (looked in {looked}). "
            + _how_to_get(dataset.name, cfg)
        )
    if not _records(entry, folder):
        entry = None
    problems, checked = [], 0
    if entry is None:
        problems += [f"{rel}: missing" for rel in _missing(dataset, folder)]
        problems.append(
            f"no digests recorded for {folder}: `cfc-bench data download {dataset.name}` "
            "(with the same --root/--mirror) checks and records them"
        )
    else:
        for rel, record in tqdm(entry["files"].items(), desc=dataset.name, disable=None):
            path = folder / rel
            if not path.is_file():
                problems.append(f"{rel}: missing")
                continue
            checked += 1
            if (found := file_digest(path)) != record["sha256"]:
                problems.append(f"{rel}: sha256 {found}, recorded {record['sha256']}")
    for rel, digest in dataset.published().items():
        path = folder / rel
        if path.is_file() and (found := file_digest(path, digest.algorithm)) != digest.value:
            problems.append(f"{rel}: {digest.algorithm} {found}, published {digest.value}")
    return Verification(dataset.name, folder, checked, problems, entry)


# -- preprocessed caches --------------------------------------------------------------------
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


# -- the command line -----------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", help="data root (default: $CFC_BENCH_DATA or ~/.cache/cfc-bench)")
    common.add_argument(
        "--mirror",
        metavar="DIR_OR_URL",
        help="a copy laid out as <mirror>/<dataset>/<files>: a folder is used in place, "
        "a URL is downloaded from (default: $CFC_BENCH_DATA_MIRROR)",
    )
    names = sorted({*TASK_DATASETS, *DATASETS, "all"})
    parser = argparse.ArgumentParser(
        prog="cfc-bench data", description="Download, inspect and verify benchmark datasets."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", parents=[common], help="datasets, sources and status")
    listing.set_defaults(run=_cmd_list)
    download = commands.add_parser(
        "download", parents=[common], help="fetch, check and record datasets"
    )
    download.add_argument(
        "targets", nargs="+", choices=names, metavar="TASK", help=", ".join(names)
    )
    download.set_defaults(run=_cmd_download)
    check = commands.add_parser(
        "verify", parents=[common], help="re-hash datasets against the manifest"
    )
    check.add_argument("targets", nargs="+", choices=names, metavar="TASK", help=", ".join(names))
    check.set_defaults(run=_cmd_verify)
    info = commands.add_parser(
        "info",
        parents=[common],
        help="build a task and describe its data",
        epilog="example: cfc-bench data info physionet task.train_limit=100",
    )
    info.add_argument("task", help="a task name (conf/task/<name>.yaml)")
    info.add_argument("overrides", nargs="*", help="Hydra overrides, as for `cfc-bench train`")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(run=_cmd_info)
    return parser


def _each(targets: Sequence[str]) -> list[Dataset]:
    found: dict[str, Dataset] = {}
    for target in targets:
        datasets = datasets_for(target)
        if not datasets:
            print(f"{target}: needs no data")
        found.update((d.name, d) for d in datasets)
    return list(found.values())


def _cmd_download(args: argparse.Namespace, cfg: DataConfig) -> int:
    failed = 0
    for dataset in _each(args.targets):
        try:
            folder = install(dataset, cfg)
        except DataError as err:
            print(f"{dataset.name}: error: {err}", file=sys.stderr)
            failed += 1
        else:
            print(f"{dataset.name}: ready in {folder}")
    return 1 if failed else 0


def _cmd_verify(args: argparse.Namespace, cfg: DataConfig) -> int:
    failed = 0
    for dataset in _each(args.targets):
        if args.targets == ["all"] and locate(dataset.name, cfg) is None:
            print(f"{dataset.name}: not installed (skipped)")
            continue
        try:
            result = verify(dataset, cfg)
        except DataError as err:
            print(f"{dataset.name}: error: {err}", file=sys.stderr)
            failed += 1
            continue
        if result.ok:
            when = result.recorded["installed_at"] if result.recorded else "?"
            print(
                f"{dataset.name}: ok, {result.checked:,} files in {result.folder} match the "
                f"digests recorded {when}"
            )
        else:
            failed += 1
            shown = result.problems[:20]
            more = len(result.problems) - len(shown)
            print(
                f"{dataset.name}: FAILED in {result.folder}:\n  "
                + "\n  ".join(shown)
                + (f"\n  ... and {more} more" if more > 0 else ""),
                file=sys.stderr,
            )
    return 1 if failed else 0


def _cmd_info(args: argparse.Namespace, cfg: DataConfig) -> int:
    from cfc_bench.data.info import data_info, format_info

    try:
        info = data_info(args.task, args.overrides, cfg)
    except ValueError as err:  # the task or an override does not compose
        print(f"cfc-bench data info: {err}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _cmd_list(args: argparse.Namespace, cfg: DataConfig) -> int:
    root = data_root(cfg)
    for dataset in DATASETS.values():
        tasks = [t for t, names in TASK_DATASETS.items() if dataset.name in names]
        folder = locate(dataset.name, cfg)
        entry = _entry(root, dataset.name)
        if folder is None:
            status = "not installed"
        elif _records(entry, folder):
            status = f"{folder} (recorded {entry['installed_at']})"
        else:
            status = f"{folder} (no digests recorded)"
        print(f"{dataset.name}: {dataset.about}")
        print(f"  tasks: {', '.join(tasks) or '-'}; status: {status}")
        for source in dataset.sources:
            print(f"  {source.url}" + (f"  {source.digest}" if source.digest else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`cfc-bench data COMMAND ...`; returns the exit status (1 on a data error)."""
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = DataConfig(root=args.root, mirror=args.mirror)
    try:
        return args.run(args, cfg)
    except DataError as err:
        print(f"cfc-bench data {args.command}: error: {err}", file=sys.stderr)
        return 1
