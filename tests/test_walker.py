"""Walker2d task: the reference's file split, RNG order, windows and the protocol's counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cfc_bench.tasks.base import DataConfig, Select
from cfc_bench.tasks.walker import FILES, WalkerConfig, split_files, subsample, windows


def loop_subsample(pairs: int, rng: np.random.RandomState) -> tuple[list[int], list[int]]:
    """The sampling rule written as a loop: one draw per pair, elapsed counts skipped pairs."""
    kept, elapsed, skip = [], [], 0
    for t in range(pairs):
        skip += 1
        if rng.rand() < 0.9:
            kept.append(t)
            elapsed.append(skip)
            skip = 0
    return kept, elapsed


def test_split_files_follow_the_reference_shuffle() -> None:
    files = split_files(list(reversed(FILES)))  # input order must not matter: names are sorted
    assert [len(files[s]) for s in ("train", "val", "test")] == [300, 40, 60]
    assert sorted(files["train"] + files["val"] + files["test"]) == list(FILES)
    assert files["test"][:3] == ["rollout_263.npy", "rollout_266.npy", "rollout_253.npy"]


def test_subsample_draws_once_per_pair_from_a_shared_stream() -> None:
    vectorised, looped = np.random.RandomState(891374), np.random.RandomState(891374)
    for pairs in (999, 130, 1):  # consecutive files continue the same stream
        kept, elapsed = subsample(pairs, vectorised)
        expected_kept, expected_elapsed = loop_subsample(pairs, looped)
        assert kept.tolist() == expected_kept
        assert elapsed.tolist() == expected_elapsed
    assert vectorised.rand() == looped.rand()


def test_windows_start_every_16_steps_and_exclude_the_last_start() -> None:
    assert windows(64).shape == (0, 64)  # range(0, 0, 16) is empty
    assert windows(65)[:, 0].tolist() == [0]
    assert windows(81)[:, 0].tolist() == [0, 16]
    assert windows(81)[1].tolist() == list(range(16, 80))


@pytest.fixture(scope="module")
def data(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> DataConfig:
    return DataConfig(root=str(tmp_path_factory.mktemp("data")), mirror=str(mirror))


@pytest.fixture(scope="module")
def paper_task(data: DataConfig):
    return WalkerConfig(protocol="paper").build(data)


def test_window_counts_match_the_protocol(paper_task) -> None:
    sizes = {name: len(split) for name, split in paper_task.splits.items()}
    assert sizes == {"train": 9_684, "val": 1_272, "test": 1_937}
    for split in paper_task.splits.values():
        assert split.x.shape[1:] == (64, 17) and split.y.shape[1:] == (64, 17)
        assert split.x.dtype == split.y.dtype == split.dt.dtype == torch.float32
        assert bool(split.mask.all())
        assert split.dt.min() >= 1 and bool((split.dt == split.dt.round()).all())


def test_target_is_the_next_raw_state(paper_task) -> None:
    # Where the next kept pair follows without a gap, its input is this pair's target.
    test = paper_task.splits["test"]
    consecutive = test.dt[:, 1:] == 1
    assert bool(consecutive.any())
    assert torch.equal(test.x[:, 1:][consecutive], test.y[:, :-1][consecutive])


def test_test_split_checksum(paper_task) -> None:
    # Measured once (float64 sums of the float32 tensors); guards the pipeline against drift.
    test = paper_task.splits["test"]
    assert test.x.double().sum().item() == pytest.approx(317805.6338384162, rel=1e-9)
    assert test.dt.double().sum().item() == 137806.0
    assert test.y.double().sum().item() == pytest.approx(314148.68460457795, rel=1e-9)


def test_protocols_pick_the_evaluated_weights(data: DataConfig, paper_task) -> None:
    assert paper_task.select is Select.last
    default = WalkerConfig(train_limit=100).build(data)
    assert default.select is None  # the trainer's choice: best validation epoch by default
    assert len(default.splits["train"]) == 100
    assert torch.equal(default.splits["test"].x, paper_task.splits["test"].x)
