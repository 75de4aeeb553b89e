"""Event-based sequential MNIST (ET-sMNIST): classify a digit from the events of its pixel stream.

Protocol (``../shared/paper/protocols.md``): the standard MNIST IDX files, each image
flattened row-major to 784 pixels and binarised with ``pixel > 128``. A counter counts
pixels since the previous event (incremented before each pixel); at every pixel whose
binary value differs from the previous one (the first pixel always does) an event
``(value, elapsed=counter)`` is emitted and the counter reset. There is no trailing event
for a final run of equal pixels. At most 256 events are kept (the reference stops at the
256th), padded to 256, and elapsed times are divided by 256. The model reads the event's
value (one feature) and classifies the digit at the last event. The 10,000 test images
give 52.9 events on average, at most 105, none truncated. Metric: test accuracy; the
reference has no validation split.

``source_split`` picks the images:

- ``train`` (the protocol): the 60,000 training images train, the 10,000 test images test.
- ``test``: for smoke runs where the training images are missing. NOT the paper protocol:
  8,000 training and 2,000 test images are carved from the 10,000 test images with a
  fixed seed, and the run's notes say so.

``val_samples > 0`` holds out that many training images (fixed seed) as a validation
split; the paper protocol has none, so it must stay 0 there.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from cfc_bench.data.cache import cached
from cfc_bench.data.store import dataset_dir, raw_identity, reading
from cfc_bench.errors import DataError
from cfc_bench.metrics import ACCURACY, Metric
from cfc_bench.models.base import SequenceIO
from cfc_bench.ranges import ranged
from cfc_bench.tasks.base import DataConfig, Protocol, SequenceData, Task, TaskConfig

TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
THRESHOLD = 128
PAD = 256
CLASSES = 10
CARVED_TEST, CARVE_SEED = 2_000, 20_220_806  # test-only smoke source
VAL_SEED = 11_235
CACHE_VERSION = 1  # bump when the encoding changes


class SourceSplit(Enum):
    train = "train"  # the protocol: MNIST's training images train
    test = "test"  # smoke runs only: train and test carved from the test images


@dataclass
class ETSMNISTConfig(TaskConfig):
    name: str = "et_smnist"
    source_split: SourceSplit = SourceSplit.train
    # training images held out for validation (0 = none, as the paper)
    val_samples: int = ranged(0, ge=0)
    metric: ClassVar[Metric] = ACCURACY

    def has_validation(self) -> bool:
        return self.val_samples > 0

    def build(self, data: DataConfig) -> Task:
        source = SourceSplit(self.source_split)
        if Protocol(self.protocol) is Protocol.paper and self.val_samples:
            raise ValueError(
                f"task.val_samples={self.val_samples} but the paper protocol has no validation "
                "split: set task.val_samples=0 or task.protocol=default"
            )
        if self.val_samples < 0:
            raise ValueError(f"task.val_samples={self.val_samples} must be >= 0")
        files = TEST_FILES if source is SourceSplit.test else TRAIN_FILES + TEST_FILES
        folder = mnist_folder(files, data)
        params = {
            "version": CACHE_VERSION,
            "files": files,
            "raw": raw_identity("mnist", folder, files, data),
        }
        encoded = cached("et_smnist", params, lambda: encode_files(folder, files), data)
        notes = {}
        if source is SourceSplit.test:
            encoded = carve(encoded["test"], CARVED_TEST, CARVE_SEED, "train", "test")
            notes["source"] = (
                f"NOT the paper protocol: {len(encoded['train'][0]):,} train / "
                f"{len(encoded['test'][0]):,} test images carved from the 10,000 MNIST test "
                f"images (RandomState({CARVE_SEED}))"
            )
        if self.val_samples:
            train_size = len(encoded["train"][0])
            if self.val_samples >= train_size:
                raise ValueError(
                    f"task.val_samples={self.val_samples} leaves no training images "
                    f"(there are {train_size:,}); use fewer"
                )
            encoded = {
                **encoded,
                **carve(encoded["train"], self.val_samples, VAL_SEED, "train", "val"),
            }
            notes["val"] = (
                f"{self.val_samples:,} training images held out (RandomState({VAL_SEED}))"
            )
        splits = {name: to_sequences(*arrays) for name, arrays in encoded.items()}
        task = Task(
            "et_smnist",
            SequenceIO(1, CLASSES),
            per_step=False,
            metric=self.metric,
            splits=splits,
            notes=notes,
        )
        task.limit_train(self.train_limit)
        return task


def mnist_folder(files: tuple[str, ...], data: DataConfig) -> Path:
    """The folder holding all of ``files``; the error names each missing one."""
    try:
        return dataset_dir("mnist", list(files), data)
    except DataError as error:
        missing = [f for f in files if not _found(f, data)]
        if not missing:  # present, but not side by side in one folder
            raise
        hint = (
            " For a smoke run that is NOT the paper protocol, task.source_split=test carves "
            "train and test sets from the 10,000 test images."
            if any(f in TRAIN_FILES for f in missing)
            else ""
        )
        raise DataError(f"MNIST file(s) missing: {', '.join(missing)}. {error}{hint}") from None


def _found(name: str, data: DataConfig) -> bool:
    try:
        dataset_dir("mnist", [name], data, install_missing=False)  # installed (or tried) once
    except DataError:
        return False
    return True


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions (gzip-compressed if ``.gz``)."""
    with reading(path, "mnist"), (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    expected = bytes([0, 0, 0x08, ndim])  # zero, zero, type code 0x08 = ubyte, dimensions
    if raw[:4] != expected:
        raise DataError(
            f"{path} has magic number 0x{raw[:4].hex()}; expected 0x{expected.hex()} (IDX "
            f"unsigned bytes, {ndim} dimensions). The file is damaged or not this MNIST file: "
            "download it again."
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} ends inside its IDX header; download it again")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(
            f"{path} holds {len(raw) - header:,} data bytes but its header announces shape "
            f"{shape}; download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_pair(folder: Path, images_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(folder / images_name, 3)
    labels = read_idx(folder / labels_name, 1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataError(
            f"{folder / images_name} holds images of shape {images.shape} and "
            f"{folder / labels_name} {len(labels):,} labels; expected (N, 28, 28) and N"
        )
    if labels.max(initial=0) >= CLASSES:
        raise DataError(f"{folder / labels_name} holds labels above 9; download it again")
    return images, labels


def encode_events(images: np.ndarray) -> tuple[np.ndarray, ...]:
    """Events of every image at once: values (0/1), elapsed (pixels), mask, all ``[N, 256]``.

    Also returns each image's event count before truncation.
    """
    n = len(images)
    bits = images.reshape(n, -1) > THRESHOLD
    changed = np.ones_like(bits)
    changed[:, 1:] = bits[:, 1:] != bits[:, :-1]
    rows, cols = np.nonzero(changed)  # row-major: each image's events in pixel order
    counts = changed.sum(axis=1)
    slot = np.arange(len(rows)) - (np.cumsum(counts) - counts)[rows]
    previous = np.where(slot > 0, np.roll(cols, 1), -1)  # the pixel of the previous event
    keep = slot < PAD
    rows, cols, slot, previous = rows[keep], cols[keep], slot[keep], previous[keep]
    values = np.zeros((n, PAD), dtype=np.uint8)
    elapsed = np.zeros((n, PAD), dtype=np.int16)
    mask = np.zeros((n, PAD), dtype=bool)
    values[rows, slot] = bits[rows, cols]
    elapsed[rows, slot] = cols - previous
    mask[rows, slot] = True
    return values, elapsed, mask, counts


def encode_files(folder: Path, files: tuple[str, ...]) -> dict[str, tuple[np.ndarray, ...]]:
    """Compact event arrays and labels per official split (``train`` only if it was asked)."""
    pairs = ({"train": TRAIN_FILES} if TRAIN_FILES[0] in files else {}) | {"test": TEST_FILES}
    encoded = {}
    for split, (images_name, labels_name) in pairs.items():
        images, labels = read_pair(folder, images_name, labels_name)
        values, elapsed, mask, _ = encode_events(images)
        encoded[split] = (values, elapsed, mask, labels.astype(np.int64))
    return encoded


def carve(
    arrays: tuple[np.ndarray, ...], size: int, seed: int, rest_name: str, carved_name: str
) -> dict[str, tuple[np.ndarray, ...]]:
    """Split rows into ``size`` random ones (``carved_name``) and the rest, both in file order."""
    chosen = np.zeros(len(arrays[0]), dtype=bool)
    chosen[np.random.RandomState(seed).permutation(len(chosen))[:size]] = True
    return {
        rest_name: tuple(a[~chosen] for a in arrays),
        carved_name: tuple(a[chosen] for a in arrays),
    }


def to_sequences(
    values: np.ndarray, elapsed: np.ndarray, mask: np.ndarray, labels: np.ndarray
) -> SequenceData:
    return SequenceData(
        x=torch.tensor(values, dtype=torch.float32).unsqueeze(-1),
        dt=torch.tensor(elapsed, dtype=torch.float32) / PAD,
        mask=torch.tensor(mask),
        y=torch.tensor(labels),
    )
