"""The registry of benchmark datasets: official sources, published digests, file layouts.

Each :class:`Dataset` names the files its publisher serves (archives are unpacked into
the dataset folder) and the files of the extracted layout, which is also what a mirror
holds (``<mirror>/<dataset>/<files>``). Digests are listed where the publisher or a
long-standing reference (torchvision for MNIST) gives them; the MNIST test images and
all MNIST labels were also checked against ``../shared/data/mnist``. Which datasets a
task reads is :data:`TASK_DATASETS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cfc_bench.data.download import Digest
from cfc_bench.errors import DataError


@dataclass(frozen=True)
class Source:
    """One file as its publisher serves it."""

    url: str
    digest: Digest | None = None  # published digest of the file, checked after download
    unpack: str | None = None  # archives: a path the archive holds, to anchor its layout

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]


@dataclass(frozen=True)
class Dataset:
    """A dataset: where it comes from and which files its extracted layout holds."""

    name: str
    about: str
    sources: tuple[Source, ...]  # official downloads; empty for mirror-only datasets
    files: tuple[str, ...]  # files of the extracted layout known in advance
    # more files, listed by some of ``files`` (PhysioNet's records, named in Outcomes-*.txt)
    listed: Callable[[Path], list[str]] | None = None
    read_by: str = ""  # a task that reads it through an option (not in TASK_DATASETS)
    partial: str = ""  # what works while some files are missing (shown by `cfc-bench data list`)

    def layout(self, folder: Path) -> list[str]:
        """Every file of the extracted layout; ``folder`` must hold ``files`` already."""
        return list(self.files) + (self.listed(folder) if self.listed else [])

    def missing(self, folder: Path) -> list[str]:
        """Files of the layout that ``folder`` lacks (only of ``files`` while those are
        incomplete, since they list the rest)."""
        if any(not (folder / f).is_file() for f in self.files):
            return [f for f in self.files if not (folder / f).is_file()]
        return [f for f in self.layout(folder) if not (folder / f).is_file()]

    def published(self) -> dict[str, Digest]:
        """Published digests of the layout's files (those installed exactly as served)."""
        return {s.filename: s.digest for s in self.sources if s.digest and not s.unpack}


def _physionet_records(folder: Path) -> list[str]:
    """``set-a/<RecordID>.txt`` ... for every RecordID in the Outcomes files."""
    records = []
    for part in "ab":
        path = folder / f"Outcomes-{part}.txt"
        for number, line in enumerate(path.read_text(errors="replace").splitlines()[1:], 2):
            record = line.split(",")[0].strip()
            if not record.isdigit():  # also keeps a forged list from naming other paths
                raise DataError(f"{path}, line {number}: RecordID {record!r} is not a number")
            records.append(f"set-{part}/{record}.txt")
    return records


PHYSIONET = "https://physionet.org/files/challenge-2012/1.0.0"
UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/00196"
MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist"
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
PERSON_FILE = "ConfLongDemo_JSI.txt"

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "physionet2012",
            "PhysioNet/CinC Challenge 2012, labelled sets a and b (ODC-By 1.0)",
            sources=(
                Source(f"{PHYSIONET}/set-a.tar.gz", unpack="set-a"),
                Source(f"{PHYSIONET}/set-b.tar.gz", unpack="set-b"),
                Source(f"{PHYSIONET}/Outcomes-a.txt"),
                Source(f"{PHYSIONET}/Outcomes-b.txt"),
            ),
            files=("Outcomes-a.txt", "Outcomes-b.txt"),
            listed=_physionet_records,
        ),
        Dataset(
            "person_activity",
            'UCI "Localization Data for Person Activity" (CC BY 4.0)',
            sources=(
                Source(f"{UCI}/{PERSON_FILE}", Digest("md5", "280a677ae0d673ec9a50ada480d8a529")),
            ),
            files=(PERSON_FILE,),
        ),
        Dataset(
            "person_activity_sample",
            "3 of person_activity's 25 recordings, in its format (mirrors only, no digest)",
            sources=(),
            files=(PERSON_FILE,),
            read_by="person_activity with task.source=person_activity_sample",
        ),
        Dataset(
            "walker",
            "Walker2d-v2 rollouts of the ODE-LSTM / CfC authors (400 .npy files)",
            sources=(
                Source(
                    "https://pub.ist.ac.at/~mlechner/datasets/walker.zip", unpack="rollout_000.npy"
                ),
            ),
            files=tuple(f"rollout_{i:03d}.npy" for i in range(400)),
        ),
        Dataset(
            "mnist",
            "the MNIST database of handwritten digits (CC BY-SA 3.0)",
            sources=tuple(
                Source(f"{MNIST}/{f}", Digest("md5", md5)) for f, md5 in MNIST_MD5.items()
            ),
            files=tuple(MNIST_MD5),
            partial="without the training images, et_smnist runs only with "
            "task.source_split=test (train and test carved from the test images: NOT the "
            "paper protocol)",
        ),
    )
}

# The datasets each task reads (xor generates its data).
TASK_DATASETS: dict[str, tuple[str, ...]] = {
    "physionet": ("physionet2012",),
    "person_activity": ("person_activity",),
    "walker": ("walker",),
    "et_smnist": ("mnist",),
    "xor": (),
}


def datasets_for(target: str) -> list[Dataset]:
    """The datasets of a task name, a dataset name, or ``all`` (every downloadable one)."""
    if target == "all":
        return [d for d in DATASETS.values() if d.sources]
    if target in TASK_DATASETS:
        return [DATASETS[name] for name in TASK_DATASETS[target]]
    if target in DATASETS:
        return [DATASETS[target]]
    names = ", ".join(sorted({*TASK_DATASETS, *DATASETS}))
    raise DataError(f"unknown task or dataset '{target}': choose one of {names} or all")
