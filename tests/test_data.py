"""The data layer: downloads, digests, archives, manifest, mirrors, caches and `cfc-bench data`.

Every transfer goes to an HTTP server on 127.0.0.1 that serves fixture files written into
``tmp_path`` (with faults a test switches on); nothing touches the internet.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import torch

from cfc_bench.data import cli as data_module
from cfc_bench.data import download
from cfc_bench.data.cache import cache_key, cached
from cfc_bench.data.datasets import DATASETS, MNIST_MD5, TASK_DATASETS, Dataset, Source
from cfc_bench.data.download import Digest, extract, fetch
from cfc_bench.data.install import install
from cfc_bench.data.manifest import read_manifest, verify
from cfc_bench.data.store import dataset_dir
from cfc_bench.errors import DataError
from cfc_bench.tasks.base import DataConfig
from cfc_bench.tasks.xor import XORConfig

# -- a local HTTP server ---------------------------------------------------------------------


class Site:
    """Files under ``folder`` served at ``url``; ``cut[path] = n`` cuts the next n answers
    for ``path`` off half-way (after announcing the full Content-Length), ``ranges``
    switches Range support, ``requests`` records (path, Range header) of every GET."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.cut: dict[str, int] = {}
        self.ranges = True
        self.requests: list[tuple[str, str | None]] = []
        self.url = ""


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        site: Site = self.server.site  # type: ignore[attr-defined]
        path = unquote(urlparse(self.path).path).lstrip("/")
        site.requests.append((path, self.headers.get("Range")))
        file = site.folder / path
        if not file.is_file():
            self.send_error(404)
            return
        body = file.read_bytes()
        etag, start = _etag(body), 0
        wanted = self.headers.get("Range")
        if wanted and site.ranges and self.headers.get("If-Range") == etag:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        body = body[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.end_headers()
        if site.cut.get(path, 0) > 0:
            site.cut[path] -= 1
            body = body[: len(body) // 2]  # HTTP/1.0: the connection closes after this
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)
    folder = tmp_path / "site"
    folder.mkdir()
    site = Site(folder)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.site = site  # type: ignore[attr-defined]
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield site
    server.shutdown()
    server.server_close()


# -- a toy dataset: a tar.gz of records, a zip wrapping its files in a folder, an index -------

RECORDS = {"r1": b"record one\n", "r2": b"record two\n" * 50}
ROLLS = {"roll_0.bin": bytes(range(256)) * 40, "roll_1.bin": b"\x01" * 5000}
INDEX = b"r1\nr2\n"
LAYOUT = {
    "index.txt": INDEX,
    **{f"records/{k}.txt": v for k, v in RECORDS.items()},
    **ROLLS,
}


def _tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return buffer.getvalue()


def _md5(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _toy(site: Site, index_md5: str | None = None, base: str = "files") -> Dataset:
    """Publish the toy dataset's official files on ``site`` and describe it."""
    files = site.folder / base
    files.mkdir(parents=True, exist_ok=True)
    (files / "records.tar.gz").write_bytes(
        _tar_gz({f"records/{k}.txt": v for k, v in RECORDS.items()})
    )
    wrapped = {f"rolls/{k}": v for k, v in ROLLS.items()}
    (files / "rolls.zip").write_bytes(_zip({**wrapped, "__MACOSX/._roll_0.bin": b"junk"}))
    (files / "index.txt").write_bytes(INDEX)
    return Dataset(
        "toy",
        "a test dataset",
        sources=(
            Source(f"{site.url}/{base}/records.tar.gz", unpack="records"),
            Source(f"{site.url}/{base}/rolls.zip", unpack="roll_0.bin"),
            Source(f"{site.url}/{base}/index.txt", Digest("md5", index_md5 or _md5(INDEX))),
        ),
        files=("index.txt", *ROLLS),
        listed=lambda folder: [
            f"records/{n}.txt" for n in (folder / "index.txt").read_text().split()
        ],
    )


def _write_layout(folder: Path, layout: dict[str, bytes] = LAYOUT) -> None:
    for rel, body in layout.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(body)


def _assert_layout(folder: Path) -> None:
    for rel, body in LAYOUT.items():
        assert (folder / rel).read_bytes() == body, rel


def _assert_nothing_installed(root: Path, name: str = "toy") -> None:
    assert not (root / name).exists()
    assert name not in read_manifest(root)["datasets"]
    with pytest.raises(DataError, match="not found"):
        dataset_dir(name, ["index.txt"], DataConfig())


# -- installing from official sources --------------------------------------------------------


def test_install_unpacks_checks_and_records(site: Site, data_root: Path) -> None:
    toy = _toy(site)
    folder = install(toy, DataConfig())
    assert folder == data_root / "toy"
    _assert_layout(folder)
    # the zip's wrapping folder is stripped and its __MACOSX entry skipped
    assert sorted(p.name for p in folder.iterdir()) == ["index.txt", "records", *sorted(ROLLS)]
    entry = read_manifest(data_root)["datasets"]["toy"]
    assert entry["location"] == str(folder.resolve())
    assert entry["source"] == "official"
    assert entry["files"] == {
        rel: {"size": len(body), "sha256": _sha256(body)} for rel, body in LAYOUT.items()
    }
    archive = (site.folder / "files" / "rolls.zip").read_bytes()
    assert entry["fetched"]["rolls.zip"]["sha256"] == _sha256(archive)
    assert entry["fetched"]["index.txt"]["published"] == f"md5:{_md5(INDEX)}"
    assert not (data_root / ".downloads").exists() and not (data_root / ".staging").exists()
    assert dataset_dir("toy", ["index.txt"], DataConfig()) == folder
    result = verify(toy, DataConfig())
    assert result.ok and result.checked == len(LAYOUT)
    # a second install finds it intact and fetches nothing
    before = len(site.requests)
    assert install(toy, DataConfig()) == folder
    assert len(site.requests) == before


def test_digest_mismatch_quarantines_and_installs_nothing(site: Site, data_root: Path) -> None:
    toy = _toy(site, index_md5="0" * 32)
    with pytest.raises(DataError) as err:
        install(toy, DataConfig())
    message = str(err.value)
    assert f"expected {'0' * 32}, found {_md5(INDEX)}" in message
    quarantined = list((data_root / "quarantine" / "toy").iterdir())
    assert [p.read_bytes() for p in quarantined] == [INDEX]
    assert str(quarantined[0]) in message
    assert not (data_root / ".downloads" / "toy" / "index.txt").exists()
    _assert_nothing_installed(data_root)


def test_transfer_cut_short_is_resumed_with_a_range_request(site: Site, data_root: Path) -> None:
    toy = _toy(site)
    site.cut["files/rolls.zip"] = 1
    install(toy, DataConfig())
    _assert_layout(data_root / "toy")
    size = (site.folder / "files" / "rolls.zip").stat().st_size
    tries = [rng for path, rng in site.requests if path == "files/rolls.zip"]
    assert tries == [None, f"bytes={size // 2}-"]


def test_transfer_always_cut_short_fails_cleanly_then_restarts(site: Site, data_root: Path) -> None:
    toy = _toy(site)
    site.ranges = False
    site.cut["files/rolls.zip"] = download.ATTEMPTS
    with pytest.raises(DataError, match="stopped early 3 times") as err:
        install(toy, DataConfig())
    part = data_root / ".downloads" / "toy" / "rolls.zip.part"
    assert str(part) in str(err.value)
    full = (site.folder / "files" / "rolls.zip").stat().st_size
    assert part.stat().st_size < full
    assert not (data_root / ".downloads" / "toy" / "rolls.zip").exists()
    _assert_nothing_installed(data_root)
    # the server recovers but still ignores Range: the transfer starts again from zero
    install(toy, DataConfig())
    _assert_layout(data_root / "toy")
    assert not part.exists()


def test_fetch_resumes_a_part_file_only_while_the_file_is_unchanged(
    site: Site, tmp_path: Path
) -> None:
    body = bytes(range(256)) * 100
    (site.folder / "blob.bin").write_bytes(body)
    dest = tmp_path / "out" / "blob.bin"
    part = dest.with_name("blob.bin.part")
    dest.parent.mkdir()
    part.write_bytes(body[:1000])
    meta = dest.with_name("blob.bin.part.json")
    meta.write_text(json.dumps({"url": f"{site.url}/blob.bin", "validator": _etag(body)}))
    fetch(f"{site.url}/blob.bin", dest, Digest("sha256", _sha256(body)))
    assert dest.read_bytes() == body
    assert site.requests == [("blob.bin", "bytes=1000-")]
    assert not part.exists() and not meta.exists()
    # a .part left from an older version of the file: If-Range makes the server send it all
    part.write_bytes(b"stale bytes")
    meta.write_text(json.dumps({"url": f"{site.url}/blob.bin", "validator": '"old"'}))
    dest.unlink()
    fetch(f"{site.url}/blob.bin", dest)
    assert dest.read_bytes() == body


def test_missing_file_names_url_path_and_mirror(site: Site, data_root: Path) -> None:
    toy = _toy(site)
    (site.folder / "files" / "rolls.zip").unlink()
    with pytest.raises(DataError) as err:
        install(toy, DataConfig())
    message = str(err.value)
    assert f"HTTP 404 (Not Found) for {site.url}/files/rolls.zip" in message
    assert str(data_root / "toy") in message and "--mirror DIR_OR_URL" in message
    _assert_nothing_installed(data_root)


def test_no_network_names_url_path_and_mirror(data_root: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/walker.zip"
    offline = Dataset("walker_copy", "", (Source(url, unpack="rollout_000.npy"),), ("x",))
    with pytest.raises(DataError) as err:
        install(offline, DataConfig())
    message = str(err.value)
    assert f"could not reach {url}" in message
    assert str(data_root / "walker_copy") in message and "--mirror DIR_OR_URL" in message


def test_missing_dataset_is_fetched_and_failure_names_path_url_and_mirror(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, unreachable_url: str
) -> None:
    """A task asking for a missing dataset tries its source (here a closed local port)."""
    url = f"{unreachable_url}/walker.zip"
    offline = replace(DATASETS["walker"], sources=(Source(url, unpack="rollout_000.npy"),))
    monkeypatch.setitem(DATASETS, "walker", offline)
    with pytest.raises(DataError) as err:
        dataset_dir("walker", ["rollout_000.npy"], DataConfig())
    message = str(err.value)
    assert str(data_root / "walker" / "rollout_000.npy") in message
    assert f"could not reach {url}" in message
    assert "--mirror DIR_OR_URL" in message and "data.mirror=" in message
    assert not (data_root / "walker").exists()


def test_missing_dataset_is_installed_from_the_mirror(site: Site, data_root: Path) -> None:
    toy = _toy(site)
    DATASETS["toy"] = toy
    try:
        folder = dataset_dir("toy", ["index.txt"], DataConfig())
    finally:
        del DATASETS["toy"]
    assert folder == data_root / "toy"
    _assert_layout(folder)


# -- archives --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "archive",
    [
        {"tar": {"records/a.txt": b"a", "../evil.txt": b"x"}},
        {"tar": {"records/a.txt": b"a", "/tmp/evil.txt": b"x"}},
        {"tar": {"records/a.txt": b"a"}, "links": {"records/up": "../../evil.txt"}},
        {"tar": {"records/a.txt": b"a"}, "links": {"records/abs": "/etc/passwd"}},
        {"zip": {"records/a.txt": b"a", "records/../../evil.txt": b"x"}},
    ],
    ids=["tar-dotdot", "tar-absolute", "tar-link-up", "tar-link-absolute", "zip-dotdot"],
)
def test_unsafe_archive_is_rejected_before_anything_is_written(
    tmp_path: Path, archive: dict
) -> None:
    path = tmp_path / "bad.archive"
    if "tar" in archive:
        path.write_bytes(_tar_gz(archive["tar"], archive.get("links")))
    else:
        path.write_bytes(_zip(archive["zip"]))
    target = tmp_path / "deep" / "target"
    with pytest.raises(DataError, match="unsafe member|pointing outside"):
        extract(path, target, "records")
    assert not target.exists()
    assert not list(tmp_path.rglob("evil.txt"))


@pytest.mark.parametrize("wrapper", ["", "walker/"])
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_extract_places_the_layout_with_or_without_a_top_folder(
    tmp_path: Path, kind: str, wrapper: str
) -> None:
    members = {f"{wrapper}rollout_{i:03d}.npy": bytes([i]) * 10 for i in range(3)}
    path = tmp_path / "walker.archive"
    path.write_bytes(_zip(members) if kind == "zip" else _tar_gz(members))
    files = extract(path, tmp_path / "walker", "rollout_000.npy")
    assert sorted(files) == [f"rollout_{i:03d}.npy" for i in range(3)]
    for i in range(3):
        assert (tmp_path / "walker" / f"rollout_{i:03d}.npy").read_bytes() == bytes([i]) * 10


def test_archive_without_the_expected_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.zip"
    path.write_bytes(_zip({"something/else.txt": b"x"}))
    with pytest.raises(DataError, match="holds no 'rollout_000.npy'"):
        extract(path, tmp_path / "out", "rollout_000.npy")


def test_unsafe_archive_from_a_server_installs_nothing(site: Site, data_root: Path) -> None:
    toy = _toy(site)
    (site.folder / "files" / "records.tar.gz").write_bytes(
        _tar_gz({"records/r1.txt": b"x", "records/../../../escaped.txt": b"x"})
    )
    with pytest.raises(DataError, match="unsafe member"):
        install(toy, DataConfig())
    assert not list(data_root.parent.rglob("escaped.txt"))
    _assert_nothing_installed(data_root)


# -- the manifest and verify -----------------------------------------------------------------


def test_verify_finds_a_tampered_file_and_dataset_dir_a_missing_one(
    site: Site, data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    toy = _toy(site)
    monkeypatch.setitem(DATASETS, "toy", toy)
    folder = install(toy, DataConfig())
    assert data_module.main(["verify", "toy"]) == 0
    assert f"toy: ok, {len(LAYOUT)} files in {folder}" in capsys.readouterr().out
    tampered = folder / "records" / "r2.txt"
    body = bytearray(tampered.read_bytes())
    body[0] ^= 1  # same size: only hashing can tell
    tampered.write_bytes(bytes(body))
    result = verify(toy, DataConfig())
    assert result.problems == [
        f"records/r2.txt: sha256 {_sha256(bytes(body))}, recorded {_sha256(RECORDS['r2'])}"
    ]
    assert data_module.main(["verify", "toy"]) == 1
    err = capsys.readouterr().err
    assert "toy: FAILED" in err and "records/r2.txt: sha256" in err
    # a file gone: dataset_dir refuses the folder rather than hand out half the data
    (folder / "roll_1.bin").unlink()
    with pytest.raises(DataError, match="1 of 5 recorded files are missing or changed size"):
        dataset_dir("toy", ["index.txt"], DataConfig())
    # downloading again moves the damaged copy aside and installs a fresh one
    install(toy, DataConfig())
    _assert_layout(folder)
    assert verify(toy, DataConfig()).ok
    assert any(p.name.endswith("-toy") for p in (data_root / "quarantine").iterdir())


def test_download_again_replaces_a_copy_changed_in_place(site: Site, data_root: Path) -> None:
    toy = _toy(site)
    folder = install(toy, DataConfig())
    tampered = folder / "records" / "r2.txt"
    body = bytearray(tampered.read_bytes())
    body[0] ^= 1  # same size: only hashing can tell
    tampered.write_bytes(bytes(body))
    before = len(site.requests)
    assert install(toy, DataConfig()) == folder
    assert len(site.requests) == before + len(toy.sources)  # fetched afresh, not kept
    _assert_layout(folder)
    assert verify(toy, DataConfig()).ok
    (moved,) = (p for p in (data_root / "quarantine").iterdir() if p.name.endswith("-toy"))
    assert (moved / "records" / "r2.txt").read_bytes() == bytes(body)


def test_verify_of_unrecorded_data_says_how_to_record_it(data_root: Path) -> None:
    toy = Dataset("toy", "", (), ("index.txt", *ROLLS), listed=None)
    _write_layout(data_root / "toy", {k: v for k, v in LAYOUT.items() if k != "roll_1.bin"})
    result = verify(toy, DataConfig())
    assert result.problems[0] == "roll_1.bin: missing"
    assert "cfc-bench data download toy" in result.problems[1]


# -- mirrors ---------------------------------------------------------------------------------


def test_local_mirror_is_used_in_place_and_recorded(
    site: Site, tmp_path: Path, data_root: Path
) -> None:
    toy = _toy(site)
    mirror = tmp_path / "mirror"
    _write_layout(mirror / "toy")
    folder = install(toy, DataConfig(mirror=str(mirror)))
    assert folder == mirror / "toy"
    assert not (data_root / "toy").exists()  # nothing copied
    assert site.requests == []  # nothing downloaded
    # later runs find it through the manifest, without the mirror option
    assert dataset_dir("toy", ["index.txt"], DataConfig()) == mirror / "toy"
    assert verify(toy, DataConfig()).ok


def test_local_mirror_with_a_bad_published_digest_is_left_alone(
    site: Site, tmp_path: Path, data_root: Path
) -> None:
    toy = _toy(site)
    mirror = tmp_path / "mirror"
    _write_layout(mirror / "toy", {**LAYOUT, "index.txt": b"r1\nr2\n\n"})
    with pytest.raises(DataError, match=f"expected {_md5(INDEX)}, found") as err:
        install(toy, DataConfig(mirror=str(mirror)))
    assert "left in place" in str(err.value)
    assert (mirror / "toy" / "index.txt").read_bytes() == b"r1\nr2\n\n"
    assert "toy" not in read_manifest(data_root)["datasets"]


def test_incomplete_local_mirror_names_what_is_missing(
    site: Site, tmp_path: Path, data_root: Path
) -> None:
    toy = _toy(site)
    mirror = tmp_path / "mirror"
    _write_layout(mirror / "toy", {k: v for k, v in LAYOUT.items() if k != "records/r2.txt"})
    (mirror / "other").mkdir()
    with pytest.raises(DataError) as err:
        install(toy, DataConfig(mirror=str(mirror)))
    message = str(err.value)
    assert "1 of its files are missing, e.g. records/r2.txt" in message
    assert f"{mirror} holds: other, toy" in message
    assert site.requests == []


def test_url_mirror_is_fetched_file_by_file(site: Site, data_root: Path) -> None:
    toy = _toy(site)
    _write_layout(site.folder / "mirror" / "toy")
    install(toy, DataConfig(mirror=f"{site.url}/mirror"))
    _assert_layout(data_root / "toy")
    fetched = sorted(path for path, _ in site.requests)
    assert fetched == sorted(f"mirror/toy/{rel}" for rel in LAYOUT)  # no archive fetched
    entry = read_manifest(data_root)["datasets"]["toy"]
    assert entry["source"] == f"{site.url}/mirror"
    assert verify(toy, DataConfig()).ok


def test_url_mirror_file_with_a_bad_published_digest_is_quarantined(
    site: Site, data_root: Path
) -> None:
    toy = _toy(site)
    bad = b"r1\n"
    _write_layout(site.folder / "mirror" / "toy", {**LAYOUT, "index.txt": bad})
    with pytest.raises(DataError, match=f"expected {_md5(INDEX)}, found {_md5(bad)}"):
        install(toy, DataConfig(mirror=f"{site.url}/mirror"))
    assert [p.read_bytes() for p in (data_root / "quarantine" / "toy").iterdir()] == [bad]
    _assert_nothing_installed(data_root)


def test_physionet_record_list_from_a_mirror_cannot_name_other_paths(
    site: Site, data_root: Path
) -> None:
    outcomes = "RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n"
    folder = site.folder / "mirror" / "physionet2012"
    _write_layout(
        folder,
        {
            "Outcomes-a.txt": f"{outcomes}132539,6,1,5,-1,0\n".encode(),
            "Outcomes-b.txt": f"{outcomes}../../../evil,6,1,5,-1,0\n".encode(),
            "set-a/132539.txt": b"Time,Parameter,Value\n",
        },
    )
    with pytest.raises(DataError, match=r"Outcomes-b.txt, line 2: RecordID '../../../evil'"):
        install(DATASETS["physionet2012"], DataConfig(mirror=f"{site.url}/mirror"))
    assert not list(data_root.parent.rglob("evil*"))
    _assert_nothing_installed(data_root, "physionet2012")


# -- preprocessed caches ---------------------------------------------------------------------


def test_cached_hits_misses_and_rebuilds(data_root: Path) -> None:
    builds = []

    def build(value: float) -> dict:
        builds.append(value)
        return {"x": torch.full((3,), value)}

    cfg = DataConfig()
    first = cached("toy", {"scale": 1}, lambda: build(1.0), cfg)
    again = cached("toy", {"scale": 1}, lambda: build(99.0), cfg)
    assert builds == [1.0] and torch.equal(again["x"], first["x"])  # hit: no build
    other = cached("toy", {"scale": 2}, lambda: build(2.0), cfg)
    assert builds == [1.0, 2.0] and torch.equal(other["x"], torch.full((3,), 2.0))  # miss
    assert len(list((data_root / "cache").iterdir())) == 2
    damaged = data_root / "cache" / f"{cache_key('toy', {'scale': 1})}.pt"
    damaged.write_bytes(b"not a torch file")  # rebuilt, not an error
    value = cached("toy", {"scale": 1}, lambda: build(3.0), cfg)
    assert builds[-1] == 3.0 and torch.equal(value["x"], torch.full((3,), 3.0))
    assert torch.equal(torch.load(damaged)["x"], value["x"])

    def fail() -> None:
        raise DataError("half-built")

    with pytest.raises(DataError):
        cached("toy", {"scale": 4}, fail, cfg)
    assert len(list((data_root / "cache").iterdir())) == 2  # nothing stored for a failure


# -- the command line ------------------------------------------------------------------------


def test_cli_download_by_task_name_and_clean_errors(
    site: Site,
    data_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    toy = _toy(site)
    monkeypatch.setitem(DATASETS, "toy", toy)
    monkeypatch.setitem(TASK_DATASETS, "toytask", ("toy",))
    other_root = data_root.parent / "elsewhere"
    assert data_module.main(["download", "toytask", "xor", "--root", str(other_root)]) == 0
    out = capsys.readouterr().out
    assert "xor: needs no data" in out and f"toy: ready in {other_root / 'toy'}" in out
    _assert_layout(other_root / "toy")
    (site.folder / "files" / "index.txt").unlink()
    assert data_module.main(["download", "toy"]) == 1
    err = capsys.readouterr().err
    assert "toy: error: HTTP 404" in err and "Traceback" not in err
    assert data_module.main(["verify", "toy"]) == 1  # not in this root
    assert "toy: error: dataset 'toy' is not installed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        data_module.main(["download", "no_such_task"])
    assert usage.value.code == 2


def test_cli_info_describes_the_built_task(capsys: pytest.CaptureFixture, data_root: Path) -> None:
    args = ["info", "xor", "task.train_samples=300", "task.test_samples=120", "task.encoding=dense"]
    assert data_module.main([*args, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    task = XORConfig(train_samples=300, test_samples=120, encoding="dense").build(DataConfig())
    assert (info["task"], info["metric"], info["per_step"]) == ("xor", "accuracy", False)
    assert (info["inputs"], info["outputs"], info["data"]) == (1, 2, {})
    for split, n in (("train", 300), ("test", 120)):
        data, row = task.splits[split], info["splits"][split]
        lengths = data.mask.sum(1).double()
        assert row["sequences"] == n and row["padded_steps"] == 32
        assert row["length"]["min"] == lengths.min() and row["length"]["max"] == lengths.max()
        assert row["length"]["mean"] == pytest.approx(float(lengths.mean()))
        assert row["length"]["median"] == float(np.median(lengths.numpy()))
        step = 1 / 32  # dense encoding: every bit one step, elapsed divided by 32
        assert row["elapsed"] == pytest.approx(
            {"min": step, "median": step, "mean": step, "max": step}
        )
        ones = int(data.y.sum())
        assert row["classes"] == {"0": n - ones, "1": ones} and row["unlabelled"] == 0
    assert data_module.main(args) == 0
    text = capsys.readouterr().out
    assert "train: 300 sequences, padded to 32 steps" in text
    ones = int(task.splits["test"].y.sum())
    assert f"1: {ones} ({100 * ones / 120:.1f}%)" in text


def test_cli_info_reports_a_data_error_without_traceback(
    data_root: Path, capsys: pytest.CaptureFixture
) -> None:
    assert data_module.main(["info", "walker"]) == 1
    err = capsys.readouterr().err
    assert "cfc-bench data info: error: dataset 'walker' not found" in err
    assert "Traceback" not in err


def test_cli_info_rejects_an_unknown_task_with_its_options(
    data_root: Path, capsys: pytest.CaptureFixture
) -> None:
    assert data_module.main(["info", "no_such_task"]) == 2
    err = capsys.readouterr().err
    assert "Could not find 'task/no_such_task'" in err and "xor" in err
    assert "Traceback" not in err


def test_cli_list_shows_sources_and_status(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture
) -> None:
    mirror = tmp_path / "mirror"
    _write_layout(mirror / "person_activity_sample", {"ConfLongDemo_JSI.txt": b"rows\n"})
    assert data_module.main(["list", "--mirror", str(mirror)]) == 0
    out = capsys.readouterr().out
    for name in DATASETS:
        assert f"{name}: " in out
    assert "https://pub.ist.ac.at/~mlechner/datasets/walker.zip" in out
    assert f"md5:{MNIST_MD5['t10k-images-idx3-ubyte.gz']}" in out
    assert "walker: Walker2d" in out and "status: not installed" in out
    sample = mirror / "person_activity_sample"
    assert f"status: {sample} (no digests recorded)" in out


def test_train_stops_with_a_clean_message_when_data_is_missing(
    tmp_path: Path, unreachable_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFC_BENCH_DATA")}
    run_dir = tmp_path / "run"
    mirror = unreachable_url  # an unreachable mirror stands in for a missing network
    result = subprocess.run(
        [sys.executable, "-m", "cfc_bench.cli", "train", "task=walker", f"data.mirror={mirror}"]
        + [f"data.root={tmp_path / 'empty'}", f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 1
    assert "cfc-bench train: error: dataset 'walker' not found" in result.stderr
    assert str(tmp_path / "empty" / "walker" / "rollout_000.npy") in result.stderr
    assert f"could not reach {mirror}/walker/" in result.stderr
    assert "--mirror DIR_OR_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert "DataError: dataset 'walker' not found" in (run_dir / "failed.json").read_text()


# -- the real mirror -------------------------------------------------------------------------


def test_registry_matches_the_real_mirror(mirror: Path) -> None:
    """Published MNIST digests hold for the mirror's files; layouts list exactly its files."""
    present = sorted(p.name for p in (mirror / "mnist").iterdir())
    assert present and set(present) <= set(MNIST_MD5)
    for name in present:
        assert _md5((mirror / "mnist" / name).read_bytes()) == MNIST_MD5[name], name
    for name in ("physionet2012", "walker", "person_activity_sample"):
        folder = mirror / name
        layout = DATASETS[name].layout(folder)
        on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        assert set(layout) == on_disk, name
    assert len(DATASETS["physionet2012"].layout(mirror / "physionet2012")) == 8002


def test_real_walker_mirror_installs_in_place_and_verifies(mirror: Path, data_root: Path) -> None:
    cfg = DataConfig(mirror=str(mirror))
    assert install(DATASETS["walker"], cfg) == mirror / "walker"
    entry = read_manifest(data_root)["datasets"]["walker"]
    assert len(entry["files"]) == 400
    first = (mirror / "walker" / "rollout_000.npy").read_bytes()
    assert entry["files"]["rollout_000.npy"]["sha256"] == _sha256(first)
    assert verify(DATASETS["walker"], DataConfig()).ok
    assert not (data_root / "walker").exists()  # used in place, not copied
