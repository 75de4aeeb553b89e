"""Raw files are not trusted blindly: a preprocessing cache holds the tensors of exactly the
files it was built from, a mirror that differs from the installed copy is reported, every
loader names a file it cannot read and says what to do, and `cfc-bench data list` says
what an incomplete dataset lacks.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_et_smnist import write_idx  # tests/ is on the path
from test_person_activity import A01, synthetic_recording, write
from test_physionet import write_dataset

from cfc_bench.data import cli
from cfc_bench.data.datasets import DATASETS, Dataset
from cfc_bench.data.install import install
from cfc_bench.data.manifest import read_manifest
from cfc_bench.errors import DataError
from cfc_bench.tasks import person_activity, physionet
from cfc_bench.tasks.base import DataConfig
from cfc_bench.tasks.et_smnist import read_idx
from cfc_bench.tasks.person_activity import FILE, PersonActivityConfig, read_readings
from cfc_bench.tasks.physionet import PhysioNetConfig
from cfc_bench.tasks.physionet_records import read_labels, read_rows
from cfc_bench.tasks.walker import load_rollout


def _garble_in_place(path: Path, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` (same length): the size stays, the content does not."""
    assert len(old) == len(new)
    body = path.read_bytes()
    assert old in body
    path.write_bytes(body.replace(old, new, 1))


# -- the cache key covers the raw files ------------------------------------------------------
def test_a_changed_raw_file_is_read_again_not_served_from_the_cache(data_root: Path) -> None:
    folder = write_dataset(data_root)  # an unrecorded folder in the data root
    PhysioNetConfig().build(DataConfig())  # fills the cache
    record = folder / "set-a" / "100002.txt"
    _garble_in_place(record, b"Time,Parameter", b"Time;Parameter")
    with pytest.raises(DataError, match=f"{record}:1: expected the header"):
        PhysioNetConfig().build(DataConfig())


@pytest.fixture
def tiny(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A one-file dataset in person_activity's format, installed in the data root."""
    monkeypatch.setitem(DATASETS, "tiny", Dataset("tiny", "a test dataset", (), (FILE,)))
    write(data_root / "tiny", synthetic_recording("A01", 120, A01))
    assert install(DATASETS["tiny"], DataConfig()) == data_root / "tiny"
    return data_root / "tiny"


def _build(cfg: DataConfig) -> int:
    return len(PersonActivityConfig(source="tiny").build(cfg).splits["train"])


def test_a_mirror_that_differs_from_the_installed_copy_is_reported(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    windows = _build(DataConfig())  # from the installed copy; fills the cache
    same = tmp_path / "same"
    shutil.copytree(tiny, same / "tiny")
    assert _build(DataConfig(mirror=str(same))) == windows  # same files: nothing to report
    garbled = tmp_path / "garbled"
    shutil.copytree(tiny, garbled / "tiny")
    _garble_in_place(garbled / "tiny" / FILE, b",walking", b",walkin?")
    with pytest.raises(DataError) as err:
        _build(DataConfig(mirror=str(garbled)))
    message = str(err.value)
    assert f"the mirror folder {garbled / 'tiny'} holds dataset 'tiny' with 1 of 1 files" in message
    assert f"different from the copy installed in {tiny}" in message and FILE in message
    assert f"cfc-bench data download tiny --mirror {garbled}" in message
    # installing the mirror's files records them; the task then reads and validates them
    assert cli.main(["download", "tiny", "--mirror", str(garbled)]) == 0
    entry = read_manifest(tiny.parent)["datasets"]["tiny"]
    assert entry["location"] == str((garbled / "tiny").resolve())
    with pytest.raises(DataError, match=f"{garbled / 'tiny' / FILE}, line 1: unknown activity"):
        _build(DataConfig(mirror=str(garbled)))


def test_an_installed_file_changed_in_place_is_refused(tiny: Path) -> None:
    _build(DataConfig())
    _garble_in_place(tiny / FILE, b",walking", b",walkin?")
    with pytest.raises(DataError) as err:
        _build(DataConfig())
    message = str(err.value)
    assert f"dataset 'tiny' in {tiny} is not what was installed" in message
    assert f"have other contents (e.g. {FILE})" in message
    assert "cfc-bench data verify tiny" in message


def test_a_garbled_copy_of_the_real_physionet_mirror_is_reported(
    mirror: Path, data_root: Path, tmp_path: Path
) -> None:
    """The issue's case: PhysioNet installed from the mirror, then a copy of the mirror
    with one record garbled passed as data.mirror (the rest of the copy links to it)."""
    real = mirror / "physionet2012"
    install(DATASETS["physionet2012"], DataConfig(mirror=str(mirror)))
    copy = tmp_path / "copy" / "physionet2012"
    for path in real.rglob("*"):
        if path.is_file():
            (copy / path.relative_to(real)).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, copy / path.relative_to(real))
    record = sorted((real / "set-a").iterdir())[7]
    garbled = copy / "set-a" / record.name
    garbled.unlink()
    garbled.write_bytes(record.read_bytes().replace(b",", b";", 1))
    with pytest.raises(DataError) as err:
        PhysioNetConfig().build(DataConfig(mirror=str(copy.parent)))
    message = str(err.value)
    assert f"the mirror folder {copy} holds dataset 'physionet2012' with 1 of" in message
    assert f"set-a/{record.name}" in message


# -- every loader names an unreadable file and what to do ------------------------------------
def _assert_names(err: pytest.ExceptionInfo[DataError], path: Path, dataset: str) -> None:
    message = str(err.value)
    assert f"{path} could not be read" in message
    assert f"cfc-bench data verify {dataset}" in message
    assert f"cfc-bench data download {dataset}" in message


def test_walker_file_with_a_garbled_header(tmp_path: Path) -> None:
    path = tmp_path / "rollout_000.npy"
    np.save(path, np.zeros((5, 17)))
    _garble_in_place(path, b"}", b" ")  # the header's dict never closes: a tokenize error
    with pytest.raises(DataError) as err:
        load_rollout(path)
    _assert_names(err, path, "walker")


def test_physionet_record_and_outcomes_that_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "132539.txt"
    path.mkdir()  # a folder where a record file should be
    with pytest.raises(DataError) as err:
        read_rows([path])
    _assert_names(err, path, physionet.DATASET)
    outcomes = tmp_path / "Outcomes-a.txt"
    outcomes.write_bytes(bytes(range(128, 256)) * 4)  # not text
    with pytest.raises(DataError) as err:
        read_labels(tmp_path, ["a"], np.array([132539]))
    _assert_names(err, outcomes, physionet.DATASET)


def test_person_activity_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / FILE
    path.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(DataError) as err:
        read_readings(path, paper=False)
    _assert_names(err, path, person_activity.FULL_SOURCE)


def test_mnist_file_with_a_damaged_compressed_stream(tmp_path: Path) -> None:
    images = np.random.RandomState(0).randint(0, 256, (20, 28, 28), np.uint8)
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    body = bytearray(path.read_bytes())
    body[10] ^= 0xFF  # the first byte after the gzip header: a zlib error, not an OSError
    path.write_bytes(bytes(body))
    with pytest.raises(DataError) as err:
        read_idx(path, 3)
    _assert_names(err, path, "mnist")


# -- incomplete data is reported as such -----------------------------------------------------
def test_list_says_what_an_incomplete_dataset_lacks(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture
) -> None:
    mnist = tmp_path / "mirror" / "mnist"
    mnist.mkdir(parents=True)
    for name in (
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ):
        (mnist / name).write_bytes(b"")
    assert cli.main(["list", "--mirror", str(mnist.parent)]) == 0
    out = capsys.readouterr().out
    assert "INCOMPLETE: 1 file of its layout missing: train-images-idx3-ubyte.gz" in out
    assert "et_smnist runs only with task.source_split=test" in out
    assert out.count("INCOMPLETE") == 1


def test_person_activity_error_names_the_sample_option(tmp_path: Path, data_root: Path) -> None:
    mirror = tmp_path / "mirror"
    write(mirror / "person_activity_sample", synthetic_recording("A01", 120, A01))
    with pytest.raises(DataError) as err:
        PersonActivityConfig().build(DataConfig(mirror=str(mirror)))
    assert "task.source=person_activity_sample" in str(err.value)
    task = PersonActivityConfig(source="person_activity_sample").build(
        DataConfig(mirror=str(mirror))
    )
    assert len(task.splits["train"]) > 0
