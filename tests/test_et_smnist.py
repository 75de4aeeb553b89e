"""ET-sMNIST task: IDX parsing, the event encoding, the protocol's figures, missing files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cfc_bench.errors import DataError
from cfc_bench.tasks.base import DataConfig
from cfc_bench.tasks.et_smnist import (
    TEST_FILES,
    TRAIN_FILES,
    ETSMNISTConfig,
    encode_events,
    read_idx,
    read_pair,
)


def loop_events(pixels: np.ndarray) -> list[tuple[int, int]]:
    """The encoding rule written as a loop over one image's pixels: (value, elapsed) events."""
    events, last, counter = [], -1, 0
    for pixel in pixels:
        counter += 1
        bit = int(pixel > 128)
        if bit != last:
            events.append((bit, counter))
            if len(events) == 256:
                break
            counter = 0
        last = bit
    return events


def events_of(values: np.ndarray, elapsed: np.ndarray, mask: np.ndarray) -> list[tuple[int, int]]:
    return list(zip(values[mask].tolist(), elapsed[mask].tolist(), strict=True))


def test_hand_made_image_encodes_to_the_events_worked_out_by_hand() -> None:
    image = np.zeros((28, 28), dtype=np.uint8)
    flat = image.reshape(-1)
    flat[3:5] = 200  # two 1-pixels
    flat[5] = 128  # not above the threshold: stays 0
    flat[783] = 255  # the last pixel
    values, elapsed, mask, counts = encode_events(image[None])
    # pixel 0 (first, value 0, elapsed 1), 3 (1, 3 pixels later), 5 (0, 2), 783 (1, 778).
    assert events_of(values[0], elapsed[0], mask[0]) == [(0, 1), (1, 3), (0, 2), (1, 778)]
    assert counts.tolist() == [4]
    assert values.shape == elapsed.shape == mask.shape == (1, 256)
    assert not values[0, 4:].any() and not elapsed[0, 4:].any()


def test_blank_image_is_one_event_with_no_trailing_event() -> None:
    values, elapsed, mask, _ = encode_events(np.zeros((1, 28, 28), dtype=np.uint8))
    assert events_of(values[0], elapsed[0], mask[0]) == [(0, 1)]


def test_alternating_pixels_truncate_at_256_events() -> None:
    image = np.tile(np.array([0, 255], dtype=np.uint8), 392).reshape(1, 28, 28)
    values, elapsed, mask, counts = encode_events(image)
    assert counts.tolist() == [784] and int(mask.sum()) == 256
    assert (elapsed[0] == 1).all() and values[0].tolist() == [0, 1] * 128


def test_vectorised_encoding_matches_the_loop() -> None:
    rng = np.random.RandomState(0)
    smooth = (rng.rand(20, 28, 28) > 0.9) * 255  # sparse strokes, few events
    noisy = rng.randint(0, 256, size=(10, 28, 28))  # hundreds of changes, truncated
    images = np.concatenate([smooth, noisy]).astype(np.uint8)
    values, elapsed, mask, _ = encode_events(images)
    for i, image in enumerate(images):
        assert events_of(values[i], elapsed[i], mask[i]) == loop_events(image.reshape(-1))


def write_idx(path: Path, array: np.ndarray, magic: bytes | None = None) -> Path:
    header = magic or bytes([0, 0, 0x08, array.ndim])
    blob = header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(blob) if path.suffix == ".gz" else blob)
    return path


@pytest.mark.parametrize("name", ["tiny-idx3-ubyte.gz", "tiny-idx3-ubyte"])
def test_read_idx_reads_a_hand_written_file(tmp_path: Path, name: str) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert np.array_equal(read_idx(write_idx(tmp_path / name, array), 3), array)


def test_read_idx_rejects_a_bad_magic_number_naming_the_file(tmp_path: Path) -> None:
    path = write_idx(
        tmp_path / "bad-idx1-ubyte.gz", np.zeros(3, np.uint8), magic=b"\x00\x00\x0d\x01"
    )
    with pytest.raises(DataError, match=r"bad-idx1-ubyte\.gz has magic number 0x00000d01"):
        read_idx(path, 1)
    with pytest.raises(DataError, match=r"magic number 0x00000801; expected 0x00000803"):
        read_idx(write_idx(tmp_path / "labels.gz", np.zeros(3, np.uint8)), 3)


def test_read_idx_rejects_a_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "short-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + bytes(3))
    with pytest.raises(DataError, match="3 data bytes but its header announces shape"):
        read_idx(path, 1)


def test_full_protocol_reads_train_and_test_files(data_root: Path) -> None:
    # Stand-in IDX files (20 training, 10 test images) laid out as the official download.
    rng = np.random.RandomState(3)
    folder = data_root / "mnist"
    folder.mkdir(parents=True)
    images = {"train": rng.randint(0, 256, (20, 28, 28)), "t10k": rng.randint(0, 256, (10, 28, 28))}
    for split, array in images.items():
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", array.astype(np.uint8))
        write_idx(
            folder / f"{split}-labels-idx1-ubyte.gz", np.arange(len(array), dtype=np.uint8) % 10
        )
    task = ETSMNISTConfig(val_samples=5).build(DataConfig())
    assert {name: len(split) for name, split in task.splits.items()} == {
        "train": 15,
        "val": 5,
        "test": 10,
    }
    assert "source" not in task.notes
    values, elapsed, mask, _ = encode_events(images["t10k"].astype(np.uint8))
    test = task.splits["test"]
    assert torch.equal(test.x[..., 0], torch.tensor(values, dtype=torch.float32))
    assert torch.equal(test.dt, torch.tensor(elapsed, dtype=torch.float32) / 256)
    assert torch.equal(test.mask, torch.tensor(mask)) and test.y.tolist() == list(range(10))
    paper = ETSMNISTConfig(protocol="paper").build(DataConfig())
    assert set(paper.splits) == {"train", "test"} and len(paper.splits["train"]) == 20


def test_paper_protocol_has_no_validation_split() -> None:
    with pytest.raises(ValueError, match="paper protocol has no validation split"):
        ETSMNISTConfig(protocol="paper", val_samples=1000).build(DataConfig())


def test_test_images_give_the_protocols_event_figures(mirror: Path) -> None:
    images, labels = read_pair(mirror / "mnist", *TEST_FILES)
    assert images.shape == (10_000, 28, 28) and len(labels) == 10_000
    _, _, mask, counts = encode_events(images)
    assert counts.sum() == 529_210  # 52.921 events per image: the protocol's 52.9
    assert counts.max() == 105 and (counts <= 256).all()  # none truncated
    assert np.array_equal(mask.sum(axis=1), counts)


def test_missing_training_images_are_named(mirror: Path, data_root: Path) -> None:
    with pytest.raises(DataError, match=f"missing: {TRAIN_FILES[0]}.*source_split=test"):
        ETSMNISTConfig().build(DataConfig(mirror=str(mirror)))


def test_test_source_split_carves_a_smoke_run_from_the_test_images(
    mirror: Path, data_root: Path
) -> None:
    task = ETSMNISTConfig(source_split="test", val_samples=500).build(
        DataConfig(mirror=str(mirror))
    )
    sizes = {name: len(split) for name, split in task.splits.items()}
    assert sizes == {"train": 7_500, "val": 500, "test": 2_000}
    assert "NOT the paper protocol" in task.notes["source"] and "val" in task.notes
    _, labels = read_pair(mirror / "mnist", *TEST_FILES)
    all_labels = torch.cat([split.y for split in task.splits.values()])
    assert torch.equal(all_labels.bincount(), torch.tensor(labels).long().bincount())
    test = task.splits["test"]
    assert test.x.shape == (2_000, 256, 1) and task.io.input_size == 1
    assert task.io.output_size == 10 and not task.per_step
    assert bool(((test.dt * 256) == (test.dt * 256).round()).all())
    assert bool((test.dt[test.mask] > 0).all()) and bool((test.dt[~test.mask] == 0).all())
    again = ETSMNISTConfig(source_split="test", val_samples=500).build(
        DataConfig(mirror=str(mirror))
    )
    assert torch.equal(again.splits["test"].x, test.x)  # the cached encoding, same carve
