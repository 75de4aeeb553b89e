"""Fetching, checking and unpacking raw data files.

- :func:`fetch` downloads one URL over HTTP(S) with :mod:`urllib`: into ``<dest>.part``
  first, resumed with an HTTP ``Range`` request (guarded by ``If-Range``, so a file that
  changed on the server is fetched afresh) when the transfer stops early, checked against
  the ``Content-Length`` it announced and, where the publisher gives one, its digest; only
  then renamed to ``dest``. A file whose digest does not match is moved to a quarantine
  folder, never left where it would be taken for the real one.
- :func:`extract` unpacks a tar or zip archive, refusing members that would land outside
  the target folder and links that point outside it (and passing tarfile's ``data``
  filter as well where Python has it).
- :func:`file_digest` hashes a file with :func:`pooch.file_hash`; a :class:`Digest`
  prints as pooch's ``algorithm:value`` known-hash string.

Why the transfer itself is not pooch's: :func:`pooch.retrieve` and its
``HTTPDownloader`` download into a temporary file with a random name that is deleted when
the transfer fails, send no ``Range`` request and do not compare the bytes received with
``Content-Length``, so an interrupted download of a large archive (walker.zip, the
PhysioNet sets) starts again from zero and a short read is only caught by a digest, which
most of these files lack. On a digest mismatch pooch deletes the file, where we keep it in
quarantine for inspection; its ``Untar``/``Unzip`` processors extract every member as it
is, where :func:`extract` places the layout and refuses unsafe members.

Every failure is a :class:`DataError` whose message says what went wrong and how to
fix it.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import pooch
from tqdm import tqdm

from cfc_bench.errors import DataError

log = logging.getLogger(__name__)

USER_AGENT = "cfc-bench (python urllib)"
CHUNK = 1 << 20
TIMEOUT_S = 60.0  # per socket operation, not per file
ATTEMPTS = 3  # transfers per file; each one after the first resumes the .part file
RETRY_WAIT_S = 2.0  # pause before attempt k is k-1 times this


class _Interrupted(Exception):
    """A transfer stopped early; the ``.part`` file is kept for the next attempt."""


@dataclass(frozen=True)
class Digest:
    """A published checksum: ``algorithm`` is a :mod:`hashlib` name (md5, sha256)."""

    algorithm: str
    value: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value}"


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file (``algorithm``: a :mod:`hashlib` name such as md5, sha256)."""
    return pooch.file_hash(str(path), algorithm)


def quarantine(path: Path, folder: Path) -> Path:
    """Move ``path`` into ``folder`` under a time-stamped name; returns the new path."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    moved = folder / f"{stamp}-{path.name.removesuffix('.part')}"
    shutil.move(str(path), moved)
    return moved


def fetch(
    url: str,
    dest: Path,
    expected: Digest | None = None,
    quarantine_dir: Path | None = None,
    progress: bool = True,
) -> None:
    """Download ``url`` to ``dest``, resuming and checking as the module docstring says.

    A transfer that stops early is retried ``ATTEMPTS`` times, each resuming where the
    last one stopped; if all stop early the ``.part`` file stays for the next call to
    resume. A digest mismatch moves the file into ``quarantine_dir`` (default: beside
    ``dest``, in ``quarantine/``) and raises.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _transfer(url, part, progress)
            break
        except _Interrupted as err:
            if attempt == ATTEMPTS:
                raise DataError(
                    f"download of {url} stopped early {ATTEMPTS} times (last: {err}); the "
                    f"partial file {part} is kept: run the command again to resume it"
                ) from None
            log.warning("download of %s stopped early (%s); resuming", url, err)
            time.sleep(RETRY_WAIT_S * attempt)
    if expected is not None:
        found = file_digest(part, expected.algorithm)
        if found != expected.value.lower():
            moved = quarantine(part, quarantine_dir or dest.parent / "quarantine")
            _meta_path(part).unlink(missing_ok=True)
            raise DataError(
                f"{url} does not have the published {expected.algorithm} digest: expected "
                f"{expected.value}, found {found}. The file was moved to {moved} and nothing "
                "was installed; run the command again, or use another mirror (--mirror)"
            )
    os.replace(part, dest)
    _meta_path(part).unlink(missing_ok=True)


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _transfer(url: str, part: Path, progress: bool) -> None:
    """One GET of ``url`` into ``part``, appending when the server honours a resume."""
    offset = part.stat().st_size if part.exists() else 0
    validator = _resume_validator(part, url) if offset else None
    headers = {"User-Agent": USER_AGENT}
    if validator is not None:
        headers.update({"Range": f"bytes={offset}-", "If-Range": validator})
    try:
        response = urlopen(Request(url, headers=headers), timeout=TIMEOUT_S)
    except HTTPError as err:
        if err.code == 416 and offset:  # range not satisfiable: the .part is not a prefix
            part.unlink()
            raise _Interrupted("the server refused to resume; starting again") from None
        if err.code >= 500 or err.code == 429:
            raise _Interrupted(f"HTTP {err.code} {err.reason}") from None
        raise DataError(f"HTTP {err.code} ({err.reason}) for {url}") from None
    except URLError as err:
        raise DataError(f"could not reach {url}: {err.reason}") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise _Interrupted(f"{type(err).__name__}: {err}") from None
    with response:
        if validator is not None and response.status == 206:
            if _range_start(response.headers.get("Content-Range")) != offset:
                part.unlink()
                raise _Interrupted("the server answered a different range; starting again")
            mode = "ab"
        else:  # a full answer (first try, or the file changed since the .part was started)
            offset, mode = 0, "wb"
            _save_validator(part, url, response.headers)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                leave=False,
                disable=None if progress else True,  # None: only on a terminal
            ) as bar,
        ):
            try:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
            except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
                raise _Interrupted(f"{type(err).__name__}: {err}") from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Interrupted(f"received {size:,} of {total:,} bytes")


def _range_start(content_range: str | None) -> int | None:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (content_range or "").strip())
    return int(match.group(1)) if match else None


def _save_validator(part: Path, url: str, headers: http.client.HTTPMessage) -> None:
    """Remember what identifies this version of the file, so a resume can be guarded."""
    etag = headers.get("ETag")
    validator = etag if etag and not etag.startswith("W/") else headers.get("Last-Modified")
    meta = _meta_path(part)
    if validator is None:
        meta.unlink(missing_ok=True)  # nothing to guard a resume with: never resume
        return
    part.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"url": url, "validator": validator}))


def _resume_validator(part: Path, url: str) -> str | None:
    try:
        meta = json.loads(_meta_path(part).read_text())
    except (OSError, ValueError):
        return None
    return meta.get("validator") if meta.get("url") == url else None


def extract(archive: Path, target: Path, marker: str) -> list[str]:
    """Unpack ``archive`` (tar, tar.gz/bz2/xz or zip) into ``target``; returns the files.

    ``marker`` is a path (file or folder) the unpacked layout must hold; the members are
    placed so that it lands at ``target/marker``. An archive that wraps everything in a
    top folder (``walker.zip`` holds ``walker/rollout_000.npy``) thus has that folder
    stripped, and members outside it (``__MACOSX/`` and the like) are skipped. Any member
    with an absolute path or ``..``, any link leading outside ``target`` and any special
    file makes the whole archive rejected before anything is written.
    """
    try:
        if zipfile.is_zipfile(archive):
            return _extract_zip(archive, target, marker)
        if tarfile.is_tarfile(archive):
            return _extract_tar(archive, target, marker)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise DataError(f"cannot unpack {archive}: {err}; delete it and download again") from err
    raise DataError(f"{archive} is neither a tar nor a zip archive; delete it and download again")


def _safe_name(archive: Path, name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise DataError(f"{archive} holds an unsafe member '{name}' (outside the target folder)")
    return path


def _prefix(archive: Path, names: list[PurePosixPath], marker: str) -> PurePosixPath:
    """The folder inside the archive that corresponds to the dataset folder."""
    wanted = PurePosixPath(marker).parts
    prefixes = [
        PurePosixPath(*p.parts[:i])
        for p in names
        for i in range(len(p.parts) - len(wanted) + 1)
        if p.parts[i : i + len(wanted)] == wanted
    ]
    if not prefixes:
        raise DataError(f"{archive} holds no '{marker}': it is not the expected archive")
    return min(prefixes, key=lambda p: len(p.parts))


def _strip(path: PurePosixPath, prefix: PurePosixPath) -> PurePosixPath | None:
    if path.parts[: len(prefix.parts)] != prefix.parts or path == prefix:
        return None
    return PurePosixPath(*path.parts[len(prefix.parts) :])


def _extract_tar(archive: Path, target: Path, marker: str) -> list[str]:
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        names = [_safe_name(archive, m.name) for m in members]
        prefix = _prefix(archive, names, marker)
        selected, files = [], []
        for member, name in zip(members, names, strict=True):
            rel = _strip(name, prefix)
            if rel is None:
                continue
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                raise DataError(f"{archive} holds a special file '{member.name}'; refusing it")
            if member.issym():
                link = PurePosixPath(member.linkname)
                if link.is_absolute() or not _inside(rel.parent / link):
                    raise DataError(
                        f"{archive} holds a link '{member.name}' -> '{member.linkname}' "
                        "pointing outside the target folder; refusing it"
                    )
            if member.islnk():
                link = _strip(_safe_name(archive, member.linkname), prefix)
                if link is None:
                    raise DataError(
                        f"{archive} holds a hard link '{member.name}' -> '{member.linkname}' "
                        "pointing outside the target folder; refusing it"
                    )
                member.linkname = str(link)
            member.name = str(rel)
            selected.append(member)
            if member.isfile():
                files.append(member.name)
        target.mkdir(parents=True, exist_ok=True)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, members=selected, filter="data")
        else:  # Python < 3.10.12 / 3.11.4: the checks above are all there is
            tar.extractall(target, members=selected)
    return files


def _inside(path: PurePosixPath) -> bool:
    """Whether a relative path stays inside its root once ``..`` parts are resolved."""
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return False
    return True


def _extract_zip(archive: Path, target: Path, marker: str) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        names = [_safe_name(archive, i.filename) for i in infos]
        prefix = _prefix(archive, names, marker)
        selected = []
        for info, name in zip(infos, names, strict=True):
            rel = _strip(name, prefix)
            if rel is None:
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DataError(f"{archive} holds a link '{info.filename}'; refusing it")
            selected.append((info, rel))
        files = []
        for info, rel in selected:
            path = target.joinpath(*rel.parts)
            if not path.resolve().is_relative_to(target.resolve()):  # through a link: refuse
                raise DataError(f"{archive}: '{info.filename}' would land outside {target}")
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            files.append(str(rel))
    return files
