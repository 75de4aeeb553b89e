"""PhysioNet 2012 task: parsing, binning, protocols, errors and cache, on hand-made records
in the raw format and on the real set-a (skipped without the data mirror)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import ConfigCompositionException

from cfc_bench.config import compose
from cfc_bench.errors import DataError
from cfc_bench.metrics import AUC, AUPRC
from cfc_bench.tasks import physionet
from cfc_bench.tasks.base import DataConfig, Protocol
from cfc_bench.tasks.physionet import PhysioNetConfig, PhysioSet, feature_range, to_sequences
from cfc_bench.tasks.physionet_records import FEATURES, Records

AGE, GENDER, HEIGHT, ICU, WEIGHT = range(5)
HR, MECHVENT, TEMP = FEATURES.index("HR"), FEATURES.index("MechVent"), FEATURES.index("Temp")

# The record under test: two HR readings at 00:12 (averaged), -1 descriptors, and time
# stamps on round-half-to-even ties (00:12 = 12.5 bins -> 12, 00:36 = 37.5 -> 38,
# 01:00 = 62.5 -> 62).
MAIN_ID = 100001
MAIN = """00:00,RecordID,100001
00:00,Age,60
00:00,Gender,-1
00:00,Height,170
00:00,ICUType,2
00:00,Weight,-1
00:00,HR,80
00:12,HR,90
00:12,Temp,37
00:12,HR,100
00:13,Temp,37.5
00:36,Temp,38
01:00,HR,70
01:00,MechVent,1
"""
OTHERS = {  # id: (Age, Gender, Height, ICUType, Weight, HR at 00:30, label)
    100002: (40, 0, 160, 1, 70, 60, 0),
    100003: (50, 1, 180, 3, 80, 110, 1),
    100004: (70, 1, -1, 4, 90, 75, 0),
    100005: (80, 0, 175, 2, -1, 85, 0),
}
MAIN_HOURS = np.float32([0, 0.192, 0.224, 0.608, 0.992])


def write_dataset(root: Path) -> Path:
    """Five records and their outcomes in the official layout under ``root``."""
    folder = root / "physionet2012"
    (folder / "set-a").mkdir(parents=True)
    records = {MAIN_ID: MAIN}
    outcomes = [f"{MAIN_ID},1,2,3,-1,1"]
    for rid, (age, gender, height, icu, weight, hr, label) in OTHERS.items():
        records[rid] = (
            f"00:00,RecordID,{rid}\n00:00,Age,{age}\n00:00,Gender,{gender}\n"
            f"00:00,Height,{height}\n00:00,ICUType,{icu}\n00:00,Weight,{weight}\n00:30,HR,{hr}\n"
        )
        outcomes.append(f"{rid},1,2,3,-1,{label}")
    for rid, body in records.items():
        (folder / "set-a" / f"{rid}.txt").write_text("Time,Parameter,Value\n" + body)
    header = "RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n"
    (folder / "Outcomes-a.txt").write_text(header + "\n".join(outcomes) + "\n")
    return folder


@pytest.fixture
def tiny(data_root: Path) -> Path:
    return write_dataset(data_root)


def main_row(split) -> int:
    """The hand-made record is the only one with 5 steps."""
    (row,) = torch.nonzero(split.mask.sum(1) == 5).flatten().tolist()
    return row


def expected_raw(keep_minus_one: bool) -> tuple[np.ndarray, np.ndarray]:
    """Forward-filled raw values and observed mask of the hand-made record, ``[5, 41]``."""
    values, observed = np.zeros((5, 41), np.float32), np.zeros((5, 41), np.float32)
    statics = {AGE: 60, GENDER: -1, HEIGHT: 170, ICU: 2, WEIGHT: -1}
    for feature, value in statics.items():
        if value != -1 or keep_minus_one:
            values[:, feature] = value
            observed[0, feature] = 1
    values[:, HR] = [80, 95, 95, 95, 70]  # 90 and 100 at 00:12 averaged
    observed[[0, 1, 4], HR] = 1
    values[:, TEMP] = [0, 37, 37.5, 38, 38]  # 0 before the first reading
    observed[[1, 2, 3], TEMP] = 1
    values[4, MECHVENT] = 1
    observed[4, MECHVENT] = 1
    return values, observed


def load(protocol: str = "paper", **kwargs) -> Records:
    cfg = PhysioNetConfig(protocol=Protocol(protocol), **kwargs)
    return cfg.load(DataConfig(), drop_missing=protocol == "default")


# -- hand-made records ------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["paper", "default"])
def test_bins_average_and_forward_fill(tiny: Path, protocol: str) -> None:
    records = load(protocol)
    assert records.ids.tolist() == [MAIN_ID, *OTHERS]
    assert records.labels.tolist() == [1, *(v[-1] for v in OTHERS.values())]
    assert records.lengths.tolist() == [5, 2, 2, 2, 2]
    np.testing.assert_array_equal(records.step_hours[:5], MAIN_HOURS)
    assert records.dropped == (0 if protocol == "paper" else 4)  # -1: 2 in MAIN, 2 in OTHERS

    identity = np.zeros(41, np.float32), np.ones(41, np.float32)
    seq = to_sequences(records, np.array([0, 1]), *identity, Protocol(protocol))
    values, observed = expected_raw(keep_minus_one=protocol == "paper")
    assert seq.x.shape == (2, 5, 82) and seq.x.dtype == torch.float32
    np.testing.assert_array_equal(seq.x[0, :, :41].numpy(), values)
    np.testing.assert_array_equal(seq.x[0, :, 41:].numpy(), observed)
    # The second record has 2 steps; its padding is all zero and masked out.
    assert seq.mask.tolist() == [[True] * 5, [True, True, False, False, False]]
    assert not seq.x[1, 2:].any() and not seq.dt[1, 2:].any()
    assert seq.y.tolist() == [1, 0]


def test_time_inputs_of_both_protocols(tiny: Path) -> None:
    # Time stamps 0, .192, .224, .608, .992 h.
    paper = PhysioNetConfig(protocol=Protocol.paper).build(DataConfig())
    default = PhysioNetConfig(protocol=Protocol.default).build(DataConfig())
    for task, expected in (
        (paper, [0, 0, -0.192, -0.032, -0.384]),  # previous gap, negated (reference quirk)
        (default, [0, 0.192, 0.032, 0.384, 0.384]),  # true gaps in hours
    ):
        split = next(s for s in task.splits.values() if (s.mask.sum(1) == 5).any())
        dt = split.dt[main_row(split)]
        torch.testing.assert_close(dt, torch.tensor(expected), rtol=0, atol=1e-6)
    # Every other record: steps at 0 and 0.5 h.
    for split in paper.splits.values():
        short = split.mask.sum(1) == 2
        assert split.dt[short, :2].abs().max() == 0
    for split in default.splits.values():
        short = split.mask.sum(1) == 2
        torch.testing.assert_close(split.dt[short, 1], torch.full((int(short.sum()),), 0.496))


def test_paper_normalisation_uses_all_records_and_keeps_minus_one(tiny: Path) -> None:
    task = PhysioNetConfig(protocol=Protocol.paper).build(DataConfig())
    assert set(task.splits) == {"train", "test"}
    assert [len(s) for s in task.splits.values()] == [4, 1]
    split = next(s for s in task.splits.values() if (s.mask.sum(1) == 5).any())
    x = split.x[main_row(split)]
    # (v - min) / max over all five records, test included; -1 is a value.
    expect = {
        AGE: (60 - 40) / 80,
        GENDER: (-1 + 1) / 1,
        HEIGHT: (170 + 1) / 180,
        ICU: (2 - 1) / 4,
        WEIGHT: (-1 + 1) / 90,
    }
    for feature, value in expect.items():
        torch.testing.assert_close(x[:, feature], torch.full((5,), value))
    # HR: min 60 and max 110 come from the other records.
    hr = torch.tensor([80, 95, 95, 95, 70]).float()
    torch.testing.assert_close(x[:, HR], (hr - 60) / 110)
    torch.testing.assert_close(x[:, TEMP], torch.tensor([0, 0, 0.5 / 38, 1 / 38, 1 / 38]))
    # MechVent: only ever 1, so min 1 and max 1.
    assert x[:, MECHVENT].abs().max() == 0


def test_default_ranges_use_training_records_only(tiny: Path) -> None:
    records = load("default")
    lo, hi = feature_range(records, np.array([1, 2]))  # records 100002 and 100003
    assert (lo[[AGE, HEIGHT, WEIGHT, HR]] == [40, 160, 70, 60]).all()
    assert (hi[[AGE, HEIGHT, WEIGHT, HR]] == [50, 180, 80, 110]).all()
    assert lo[TEMP] == 0 and hi[TEMP] == 1  # never observed there: identity
    assert hi[GENDER] == 1  # max 1 (the 0 -> 1 rule would give the same)
    lo, hi = feature_range(records, np.arange(5))
    assert lo[HEIGHT] == 160 and lo[WEIGHT] == 70  # -1 is missing, not a minimum

    task = PhysioNetConfig(protocol=Protocol.default).build(DataConfig())
    assert [len(task.splits[k]) for k in ("train", "val", "test")] == [3, 1, 1]
    assert task.io.input_size == 82 and task.io.values_with_mask and task.io.output_size == 2
    assert task.metric is AUC and task.extra_metrics == (AUPRC,) and not task.per_step


def test_max_of_zero_is_replaced_by_one(tiny: Path) -> None:
    records = load("paper")
    records.obs_value[records.obs_feature == TEMP] = 0.0
    lo, hi = feature_range(records, np.arange(5))
    assert lo[TEMP] == 0 and hi[TEMP] == 1


def test_train_limit(tiny: Path) -> None:
    task = PhysioNetConfig(protocol=Protocol.paper, train_limit=2).build(DataConfig())
    assert len(task.splits["train"]) == 2 and len(task.splits["test"]) == 1


# -- malformed data ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("00:30,HR,60,1", "expected 3 comma-separated fields"),
        ("00:30,HR", "expected 3 comma-separated fields"),
        ("", "expected 3 comma-separated fields"),
        ("0:30,HR,60", "time stamp '0:30' is not HH:MM"),
        ("00:75,HR,60", "time stamp '00:75' is not HH:MM"),
        ("00:30:00,HR,60", "is not HH:MM"),
        ("00:30,Pulse,60", "unknown parameter 'Pulse'"),
        ("00:30,HR,fast", "value 'fast' is not a number"),
        ("00:30,HR,nan", "value 'nan' is not a number"),
        ("00:00,HR,60", "time stamp earlier than the line before"),
    ],
)
def test_malformed_line_names_file_and_line(tiny: Path, line: str, message: str) -> None:
    path = tiny / "set-a" / "100003.txt"
    lines = path.read_text().splitlines()
    lines[8:8] = [line]  # after the 00:30 HR reading: line 9 of the file
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message) as caught:
        PhysioNetConfig().build(DataConfig())
    assert f"{path}:9:" in str(caught.value)
    assert not (tiny.parent / "cache").exists()  # nothing half-built is cached


def test_windows_line_ends_parse_alike_and_odd_bytes_name_the_line(tiny: Path) -> None:
    before = load()
    path = tiny / "set-a" / "100002.txt"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    shutil.rmtree(tiny.parent / "cache")  # parse afresh, whatever the cache holds
    after = load()
    for name in ("ids", "lengths", "step_hours", "obs_step", "obs_feature", "obs_value"):
        np.testing.assert_array_equal(getattr(before, name), getattr(after, name))
    path.write_bytes(path.read_bytes().replace(b"HR,60", b"HR,6\xff0"))
    shutil.rmtree(tiny.parent / "cache")
    with pytest.raises(DataError, match=f"{path}:8: value '6\ufffd0' is not a number"):
        load()


def test_bad_header_and_mismatched_outcomes(tiny: Path) -> None:
    path = tiny / "set-a" / "100002.txt"
    good = path.read_text()
    path.write_text(good.replace("Time,Parameter,Value", "Time;Parameter;Value"))
    with pytest.raises(DataError, match=f"{path}:1: expected the header"):
        load()
    path.write_text(good)
    (tiny / "set-a" / "100006.txt").write_text(good.replace("100002", "100006"))
    with pytest.raises(DataError, match=r"1 records without an outcome \(e.g. \[100006\]\)"):
        load()
    (tiny / "set-a" / "100006.txt").unlink()
    (tiny / "set-a" / "100005.txt").unlink()
    with pytest.raises(DataError, match=r"1 outcomes without a record file \(e.g. \[100005\]\)"):
        load()


def test_missing_dataset_says_how_to_get_it(
    data_root: Path, unreachable_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CFC_BENCH_DATA_MIRROR", unreachable_url)  # no network
    with pytest.raises(DataError) as err:
        load()
    message = str(err.value)
    assert str(data_root / "physionet2012" / "set-a") in message
    assert f"could not reach {unreachable_url}/physionet2012/" in message
    assert "--mirror DIR_OR_URL" in message


# -- cache --------------------------------------------------------------------------------
def test_cache_hit_and_rebuild_on_parameter_change(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parses = []
    parse = physionet.read_records
    monkeypatch.setattr(physionet, "read_records", lambda *a: parses.append(a[1:]) or parse(*a))
    first = load("paper")
    again = load("paper")
    assert len(parses) == 1  # second load from the cache
    np.testing.assert_array_equal(first.obs_value, again.obs_value)
    load("default")  # -1 rule differs: parsed again
    load("paper", bin_hours=0.5)  # bin size differs: parsed again
    assert parses == [(["a"], 0.016, False), (["a"], 0.016, True), (["a"], 0.5, False)]
    assert len(list((tiny.parent / "cache").glob("physionet2012-*.pt"))) == 3
    assert load("paper", bin_hours=0.5).lengths.tolist() == [3, 2, 2, 2, 2]  # 0, .5, 1 h
    assert len(parses) == 3


# -- config -------------------------------------------------------------------------------
def test_yaml_composes_and_validates_sets() -> None:
    cfg = compose(["task=physionet", "task.sets=[a,b]", "task.protocol=paper"]).task
    assert isinstance(cfg, PhysioNetConfig)
    assert cfg.sets == [PhysioSet.a, PhysioSet.b] and cfg.bin_hours == 0.016
    assert compose(["task=physionet"]).task.sets == [PhysioSet.a]
    with pytest.raises(ConfigCompositionException, match="task.sets"):
        compose(["task=physionet", "task.sets=[a,c]"])
    with pytest.raises(ValueError, match="once each"):
        PhysioNetConfig(sets=[PhysioSet.a, PhysioSet.a]).set_names()


# -- real data (set-a), parsed once per module -------------------------------------------
@pytest.fixture(scope="module")
def real(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> DataConfig:
    return DataConfig(root=str(tmp_path_factory.mktemp("physionet")), mirror=str(mirror))


@pytest.fixture(scope="module")
def real_paper(real: DataConfig):
    return PhysioNetConfig(protocol=Protocol.paper).build(real)


@pytest.fixture(scope="module")
def real_default(real: DataConfig):
    return PhysioNetConfig(protocol=Protocol.default).build(real)


def test_real_set_a_counts(real: DataConfig, real_paper) -> None:
    records = PhysioNetConfig().load(real, drop_missing=False)  # cached by real_paper
    assert len(records.ids) == 4000 and records.ids[0] == 132539
    assert int(records.labels.sum()) == 554
    assert set(records.obs_feature.tolist()) == set(range(41))
    # Time points per record (protocols.md: about 73 on average, at most about 200).
    assert records.lengths.sum() == 292_178 and records.lengths.max() == 202
    assert records.lengths.min() == 1  # three records hold only the static descriptors
    assert records.step_hours.max() == np.float32(48.0)


def test_real_splits_of_both_protocols(real_paper, real_default) -> None:
    assert {k: len(v) for k, v in real_paper.splits.items()} == {"train": 3200, "test": 800}
    sizes = {k: len(v) for k, v in real_default.splits.items()}
    assert sizes == {"train": 2560, "val": 640, "test": 800}
    assert sum(int(s.y.sum()) for s in real_paper.splits.values()) == 554
    # Both protocols test on the same records.
    paper_test, default_test = real_paper.splits["test"], real_default.splits["test"]
    assert torch.equal(paper_test.y, default_test.y)
    assert torch.equal(paper_test.mask, default_test.mask)
    for split in real_paper.splits.values():
        valid = split.mask
        assert split.x.shape[-1] == 82
        assert (split.x[..., :41][valid] >= 0).all()  # min over all records, test included
        assert (split.dt[valid] <= 0).all() and not split.dt[:, :2].any()
    for split in real_default.splits.values():
        assert (split.dt[split.mask] >= 0).all()
        assert (split.dt.double().sum(1) <= 48 + 1e-4).all()  # gaps add up to the last stamp


def test_real_split_seed_draws_another_split_of_the_same_records(real: DataConfig, real_paper):
    other = PhysioNetConfig(protocol=Protocol.paper, split_seed=0).build(real)
    for task in (real_paper, other):
        assert {k: len(v) for k, v in task.splits.items()} == {"train": 3200, "test": 800}
        assert sum(int(s.y.sum()) for s in task.splits.values()) == 554
    assert int(real_paper.splits["test"].y.sum()) == 121  # the documented split
    assert not torch.equal(real_paper.splits["test"].y, other.splits["test"].y)


def test_real_records_match_the_reference_loader(real: DataConfig, real_paper) -> None:
    """Bit-identical to a literal port of the reference's per-line loop on some records."""
    records = PhysioNetConfig().load(real, drop_missing=False)
    folder = Path(real.mirror) / "physionet2012" / "set-a"
    index = {name: i for i, name in enumerate(FEATURES)}
    longest = int(np.argmax(records.lengths))
    for i in [*range(12), longest]:
        tt, vals, mask, nobs = [0.0], [torch.zeros(41)], [torch.zeros(41)], [torch.zeros(41)]
        previous = 0
        for line in (folder / f"{records.ids[i]}.txt").read_text().splitlines()[1:]:
            stamp, param, value = line.split(",")
            hours = float(stamp.split(":")[0]) + float(stamp.split(":")[1]) / 60.0
            hours = round(hours / 0.016) * 0.016
            if hours != previous:
                tt.append(hours)
                for rows in (vals, mask, nobs):
                    rows.append(torch.zeros(41))
                previous = hours
            if param == "RecordID":
                continue
            f, n = index[param], nobs[-1][index[param]]
            vals[-1][f] = (vals[-1][f] * n + float(value)) / (n + 1) if n > 0 else float(value)
            mask[-1][f], nobs[-1][f] = 1, n + 1
        start, length = records.step_start[i], records.lengths[i]
        np.testing.assert_array_equal(
            records.step_hours[start : start + length], torch.tensor(tt).numpy()
        )
        seq = to_sequences(
            records, np.array([i]), np.zeros(41, np.float32), np.ones(41, np.float32),
            Protocol.paper,
        )  # fmt: skip
        observed = seq.x[0, :, 41:]
        assert torch.equal(observed, torch.stack(mask))
        assert torch.equal(seq.x[0, :, :41][observed == 1], torch.stack(vals)[observed == 1])


@pytest.mark.slow
def test_real_sets_a_and_b(mirror: Path, tmp_path: Path) -> None:
    data = DataConfig(root=str(tmp_path), mirror=str(mirror))
    task = PhysioNetConfig(sets=[PhysioSet.a, PhysioSet.b], protocol=Protocol.paper).build(data)
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 6400, "test": 1600}
    assert sum(int(s.y.sum()) for s in task.splits.values()) == 554 + 568
