"""Human activity task: parsing, 10 ms binning, labels, windows, split and the paper quirks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cfc_bench.config import compose
from cfc_bench.errors import DataError
from cfc_bench.metrics import IGNORE
from cfc_bench.tasks.base import DataConfig
from cfc_bench.tasks.person_activity import (
    CLASSES,
    FILE,
    MISSPELLED,
    TAGS,
    PersonActivityConfig,
    bin_readings,
    read_readings,
)

ANKLE_L, ANKLE_R, CHEST, BELT = TAGS  # tag ids in the order of the value columns
SAMPLE_POINTS = 16_485  # time points of A01-A03 (16,486 readings, one bin holds two)


def row(sequence: str, tag: str, ticks: int, xyz: tuple[float, ...], activity: str) -> str:
    return f"{sequence},{tag},{ticks},27.05.2009 14:03:25:128,{xyz[0]},{xyz[1]},{xyz[2]},{activity}"


# Ticks small enough for float64 to hold exactly, so the paper's rounding is predictable.
A01, A02 = 10_000_000, 50_000_000
HAND_MADE = [
    row("A01", ANKLE_L, A01, (1, 2, 3), "walking"),  # bin 0
    row("A01", CHEST, A01 + 40_000, (4, 5, 6), "walking"),  # bin 0 (0.4 rounds down)
    row("A01", ANKLE_L, A01 + 100_000, (3, 4, 5), "falling"),  # bin 1
    row("A01", ANKLE_L, A01 + 120_000, (5, 6, 7), "falling"),  # bin 1: averaged to (4, 5, 6)
    row("A01", ANKLE_R, A01 + 210_000, (2, 2, 2), "sitting"),  # bin 2
    row("A01", BELT, A01 + 250_000, (1, 1, 1), MISSPELLED),  # 2.5: bin 3 (default), 2 (paper)
    row("A01", CHEST, A01 + 400_000, (7, 8, 9), "sitting down"),  # bin 4
    row("A01", CHEST, A01 + 330_000, (9, 9, 9), "lying"),  # bin 3, out of tick order
    row("A01", BELT, A01 + 560_000, (6, 6, 6), MISSPELLED),  # bin 6
    row("A02", ANKLE_L, A02, (1, 1, 1), "on all fours"),  # bin 0 of the next recording
    row("A02", BELT, A02 + 100_000, (3, 3, 3), "lying down"),  # bin 1
    row("A02", ANKLE_L, A02 + 260_000, (2, 2, 2), "sitting on the ground"),  # bin 3
]


def point(observed: dict[int, tuple[float, ...]]) -> tuple[list[float], list[bool]]:
    """12 values and the 12-wide mask of a time point from {tag column: xyz}."""
    values, mask = [0.0] * 12, [False] * 12
    for tag, xyz in observed.items():
        values[3 * tag : 3 * tag + 3] = xyz
        mask[3 * tag : 3 * tag + 3] = [True] * 3
    return values, mask


# (recording, bin, {tag: xyz}, label) per time point, worked out by hand from HAND_MADE.
A02_POINTS = [(1, 0, {0: (1, 1, 1)}, 5), (1, 1, {3: (3, 3, 3)}, 2), (1, 3, {0: (2, 2, 2)}, 6)]
EXPECTED = {
    "default": [  # rows sorted by tick; exact bins, halves rounded up
        (0, 0, {0: (1, 2, 3), 2: (4, 5, 6)}, 0),
        (0, 1, {0: (4, 5, 6)}, 1),
        (0, 2, {1: (2, 2, 2)}, 3),
        (0, 3, {3: (1, 1, 1), 2: (9, 9, 9)}, 2),  # classes 4 and 2 in one bin: the smaller
        (0, 4, {2: (7, 8, 9)}, 3),
        (0, 6, {3: (6, 6, 6)}, 4),  # "standing up from sitting on the ground" is class 4
        *A02_POINTS,
    ],
    "paper": [  # file order; float ticks, halves to even; the long label is unlabelled
        (0, 0, {0: (1, 2, 3), 2: (4, 5, 6)}, 0),
        (0, 1, {0: (4, 5, 6)}, 1),
        (0, 2, {1: (2, 2, 2), 3: (1, 1, 1)}, 3),  # the unlabelled reading adds no class
        (0, 4, {2: (7, 8, 9)}, 3),
        (0, 3, {2: (9, 9, 9)}, 2),  # an earlier tick after a later one: a new time point
        (0, 6, {3: (6, 6, 6)}, IGNORE),
        *A02_POINTS,
    ],
}


def write(folder: Path, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FILE
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("protocol", ["default", "paper"])
def test_hand_made_file_bins_to_the_expected_time_points(tmp_path: Path, protocol: str) -> None:
    paper = protocol == "paper"
    points = bin_readings(read_readings(write(tmp_path, HAND_MADE), paper), paper)
    expected = EXPECTED[protocol]
    assert points["recording"].tolist() == [p[0] for p in expected]
    assert points["bin"].tolist() == [p[1] for p in expected]
    assert points["label"].tolist() == [p[3] for p in expected]
    values, mask = zip(*(point(p[2]) for p in expected), strict=True)
    assert np.array_equal(points["values"], np.array(values))
    assert np.array_equal(points["mask"], np.array(mask))


def test_all_raw_activities_map_to_seven_classes() -> None:
    assert len(CLASSES) == 11 and sorted(set(CLASSES.values())) == list(range(7))
    assert CLASSES[MISSPELLED] == CLASSES["standing up from lying"] == 4


def synthetic_recording(name: str, points: int, start: int) -> list[str]:
    """One reading per 20 ms, tags in turn, x = reading number; all walking."""
    tags = list(TAGS)
    return [
        row(name, tags[i % 4], start + 200_000 * i, (i, -i, 0.5), "walking") for i in range(points)
    ]


@pytest.mark.parametrize("protocol", ["default", "paper"])
def test_windows_split_forward_fill_and_elapsed(
    data_root: Path, tmp_path: Path, protocol: str
) -> None:
    write(
        data_root / "tiny",
        synthetic_recording("A01", 80, A01) + synthetic_recording("B01", 130, A02),
    )
    task = PersonActivityConfig(source="tiny", tau=0.5, protocol=protocol).build(DataConfig())
    train, test = task.splits["train"], task.splits["test"]
    # range(0, 80 - 50, 25) gives 2 windows and range(0, 130 - 50, 25) 4; 80/20 of 6 is 4/2.
    assert (len(train), len(test)) == (4, 2)
    assert task.per_step and task.io.input_size == 24 and task.io.values_with_mask
    assert task.io.output_size == (11 if protocol == "paper" else 7)
    for split in (train, test):
        assert split.x.shape[1:] == (50, 24) and split.y.shape[1:] == (50,)
        assert bool(split.mask.all()) and bool((split.y == 0).all())
        assert bool((split.dt[:, 0] == 0).all()) and bool((split.dt[:, 1:] == 2 * 0.5).all())
    # Each step reads one tag (x = reading number i, tag i % 4). Within the window a tag's
    # columns are 0 before its first reading and hold its last reading after it.
    window = train.x[0].numpy()
    values, mask = window[:, :12], window[:, 12:]
    assert (mask.sum(axis=1) == 3).all()
    observed = mask[:, ::3].argmax(axis=1)
    i0 = int(values[0, 3 * observed[0]])  # the window's first reading
    assert observed.tolist() == [(i0 + step) % 4 for step in range(50)]
    for step in range(50):
        for tag in range(4):
            seen = [s for s in range(step + 1) if observed[s] == tag]
            expected = (i0 + seen[-1], -(i0 + seen[-1]), 0.5) if seen else (0, 0, 0)
            assert values[step, 3 * tag : 3 * tag + 3].tolist() == list(expected)


def test_paper_resampling_is_seeded_and_draws_with_replacement(
    data_root: Path, tmp_path: Path
) -> None:
    write(data_root / "tiny", synthetic_recording("A01", 1_050, A01))  # 40 windows: 32 / 8

    def splits(seed: int) -> dict[str, torch.Tensor]:
        task = PersonActivityConfig(source="tiny", protocol="paper", resample_seed=seed).build(
            DataConfig()
        )
        assert "RandomState" in task.notes["resample"]
        return {name: first_reading(split.x) for name, split in task.splits.items()}

    def first_reading(x: torch.Tensor) -> torch.Tensor:  # identifies a window
        return x[:, 0, :12].abs().sum(dim=1)

    default = PersonActivityConfig(source="tiny").build(DataConfig())
    windows = {name: first_reading(split.x) for name, split in default.splits.items()}
    assert len(windows["train"].unique()) == 32 and len(windows["test"].unique()) == 8
    # a subset of the recordings is flagged, which the tables turn into REDUCED
    assert list(default.notes) == ["data"] and "NOT the paper protocol" in default.notes["data"]
    first, again, other = splits(0), splits(0), splits(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["train"], other["train"])
    assert len(first["train"]) == 32 and len(first["train"].unique()) < 32  # with replacement
    assert set(first["train"].tolist()) <= set(windows["train"].tolist())
    assert set(first["test"].tolist()) <= set(windows["test"].tolist())


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("A01,010-000-024-033,10400000,date,1,2,3,walking,extra", "Expected 8 fields in line 3"),
        ("A01,010-000-024-033,10400000,date,1,2", "line 3: fewer than 8 fields"),
        ("A01,010-000-024-033,104e5,date,1,2,3,walking", "line 3: ticks is not an integer"),
        ("A01,010-000-024-034,10400000,date,1,2,3,walking", "line 3: unknown tag"),
        ("A01,010-000-024-033,10400000,date,1,two,3,walking", "line 3: x, y or z is not a"),
        ("A01,010-000-024-033,10400000,date,1,2,3,dancing", "line 3: unknown activity"),
    ],
)
def test_malformed_rows_are_reported_with_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    path = write(tmp_path, [HAND_MADE[0], "", line, HAND_MADE[1]])
    with pytest.raises(DataError, match=message) as error:
        read_readings(path, paper=False)
    assert str(path) in str(error.value)


def test_config_passes_the_run_seed_to_the_resampling() -> None:
    cfg = compose(["task=person_activity", "task.protocol=paper", "seed=7"]).task
    assert isinstance(cfg, PersonActivityConfig) and cfg.resample_seed == 7
    assert cfg.source == "person_activity"


def loop_points(path: Path) -> list[tuple[int, float, dict[int, list], int]]:
    """The paper's binning written as a loop over the rows (file order, float ticks)."""
    paper_labels = {name: c for name, c in CLASSES.items() if name != MISSPELLED}
    points, name, recording, first = [], None, -1, 0.0
    for line in path.read_text().splitlines():
        sequence, tag, ticks, _, x, y, z, activity = line.split(",")
        if sequence != name:  # a new recording opens at bin 0
            name, recording, first = sequence, recording + 1, float(ticks)
            points.append([recording, 0, {}, set()])
        time_bin = round((float(ticks) - first) / 10**5)
        if time_bin != points[-1][1]:
            points.append([recording, time_bin, {}, set()])
        points[-1][2].setdefault(TAGS[tag], []).append((float(x), float(y), float(z)))
        if activity in paper_labels:
            points[-1][3].add(paper_labels[activity])
    return [(r, b, readings, min(labels, default=IGNORE)) for r, b, readings, labels in points]


@pytest.fixture(scope="module")
def sample(mirror: Path) -> Path:
    return mirror / "person_activity_sample" / FILE


def test_sample_paper_binning_matches_the_row_loop(sample: Path) -> None:
    points = bin_readings(read_readings(sample, paper=True), paper=True)
    expected = loop_points(sample)
    assert len(expected) == len(points["bin"]) == SAMPLE_POINTS
    assert points["recording"].tolist() == [p[0] for p in expected]
    assert points["bin"].tolist() == [p[1] for p in expected]
    assert points["label"].tolist() == [p[3] for p in expected]
    values, mask = zip(
        *(point({tag: np.mean(xyz, axis=0) for tag, xyz in p[2].items()}) for p in expected),
        strict=True,
    )
    assert np.array_equal(points["mask"], np.array(mask))
    assert np.allclose(points["values"], np.array(values), rtol=1e-15, atol=0)


def test_sample_labels_under_both_protocols(sample: Path) -> None:
    readings = read_readings(sample, paper=False)
    assert len(readings["ticks"]) == 16_486 and readings["recording"].max() == 2
    default = bin_readings(readings, paper=False)
    paper = bin_readings(read_readings(sample, paper=True), paper=True)
    assert len(default["label"]) == len(paper["label"]) == SAMPLE_POINTS
    assert sorted(set(default["label"].tolist())) == list(range(7))
    assert np.bincount(default["label"]).tolist() == [2281, 270, 6725, 3190, 1813, 738, 1468]
    # the 262 readings labelled "standing up from sitting on the ground" lose their class
    assert int((paper["label"] == IGNORE).sum()) == 262
    assert int((default["label"] == 4).sum()) - int((paper["label"] == 4).sum()) == 262


@pytest.mark.parametrize("protocol", ["default", "paper"])
def test_sample_builds_windows_of_50(mirror: Path, data_root: Path, protocol: str) -> None:
    cfg = PersonActivityConfig(source="person_activity_sample", protocol=protocol, tau=10)
    task = cfg.build(DataConfig(mirror=str(mirror)))
    train, test = task.splits["train"], task.splits["test"]
    assert (len(train), len(test)) == (524, 131)  # 655 windows of A01-A03, 80/20
    assert train.x.shape[1:] == test.x.shape[1:] == (50, 24)
    labels = torch.cat([train.y, test.y]).unique().tolist()
    assert labels == ([IGNORE] if protocol == "paper" else []) + list(range(7))
    assert set(torch.cat([train.dt, test.dt]).unique().tolist()) >= {0.0, 20.0, 30.0}
