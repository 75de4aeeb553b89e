"""`cfc-bench tables`: extra metrics (PhysioNet AUPRC), the paper-preset field, duplicate
seeds, one timing-sweep speed-up per preset, committed results written only on purpose, and
figures that stay readable whatever one outlier does."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from runs import table_row
from test_tables import REPORTED, cfc_run, record, run_tables

from cfc_bench.config import config_names
from cfc_bench.metrics import AUPRC
from cfc_bench.report import presets
from cfc_bench.report.cli import main
from cfc_bench.report.judge import agreement, machine_drifted, rule, speed_claim
from cfc_bench.report.plots import far_out, plot_metric_vs_time


def physionet_run(folder: Path, seed: int, **values) -> None:
    cfc_run(folder, "physionet", "auc", 57, seed, train_size=8000, n_params=1, **values)


def test_auprc_column_recorded_computed_or_empty(tmp_path: Path) -> None:
    """Recorded test/auprc, computed from test_outputs.npz, or empty for an older run."""
    root = tmp_path / "runs"
    physionet_run(root / "new", 0, **{"test/auc": 0.8, "test/auprc": 0.40})
    physionet_run(root / "old_outputs", 1, **{"test/auc": 0.82})
    out = np.array([[-2.0], [1.0], [0.5], [-1.0], [3.0]], dtype=np.float32)
    y = np.array([0, 1, 0, 0, 1])
    np.savez_compressed(root / "old_outputs/test_outputs.npz", out=out, y=y, mask=np.ones((5, 1)))
    tensors = (torch.from_numpy(a) for a in (out, y, np.ones((5, 1))))
    assert AUPRC.score(*tensors) == pytest.approx(1.0)  # both positives above every negative
    tables = tmp_path / "tables"
    assert main(["--runs", str(root), "--out", str(tables)]) == 0
    row = pd.read_csv(tables / "physionet.csv").set_index("experiment").loc["physionet_cfc"]
    assert (row["auprc_mean"], row["auprc_n"]) == (pytest.approx(0.70), 2)
    assert row["auprc_std"] == pytest.approx(0.6 / math.sqrt(2), rel=1e-5)
    md = (tables / "physionet.md").read_text().splitlines()
    assert "| agrees | ours: test AUPRC | time/epoch (s) |" in md[2]
    assert "| 0.7000 ± 0.4243 |" in next(line for line in md if "physionet_cfc" in line)
    # an older run alone: the column is there, empty
    lone = tmp_path / "lone"
    physionet_run(lone / "old", 0, **{"test/auc": 0.8})
    assert main(["--runs", str(lone), "--out", str(tmp_path / "t2")]) == 0
    md = (tmp_path / "t2/physionet.md").read_text().splitlines()
    row = next(line for line in md if "physionet_cfc" in line)
    assert "ours: test AUPRC" in md[2] and "| no (> 0.0057) | - | 1 |" in row


def test_every_paper_preset_declares_itself_and_demo_does_not() -> None:
    tasks = config_names("task")
    pairs = {
        (name, next((name[len(t) + 1 :] for t in tasks if name.startswith(f"{t}_")), "cfc"))
        for name in config_names("experiment")
    }
    composed = presets.compose_presets(pairs)
    for (name, _), config in composed.items():
        assert presets.is_paper_preset(config) is (name != "demo"), name


def test_paper_preset_is_the_field_not_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A preset named <task>_<model> that does not declare paper_preset is not judged."""
    compose = presets.compose_presets

    def undeclared(pairs: set[tuple[str, str]]) -> dict:
        found = compose(pairs)
        for config in found.values():
            OmegaConf.update(config, "paper_preset", False)
        return found

    monkeypatch.setattr(presets, "compose_presets", undeclared)
    root = tmp_path / "runs"
    scored = {"test/accuracy": 0.99, "time/epoch_s": 1.0}
    record(root / "cfc", model="cfc", experiment="xor_cfc", **scored)
    assert main(["--runs", str(root), "--out", str(tmp_path / "t")]) == 0
    row = pd.read_csv(tmp_path / "t/xor.csv").set_index("experiment").loc["xor_cfc"]
    assert row["budget"] == "as preset (200 epochs); not the paper preset"
    assert not row["comparable"] and pd.isna(row["agrees"])


def test_a_seed_run_twice_counts_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Four runs of seed 0 are one seed (n=1), the last finished used, the others listed."""
    root = tmp_path / "runs"
    for i in range(4):  # copy0 finished last
        finished = f"2026-01-0{4 - i}T00:00:00"
        cfc_run(root / f"copy{i}", "walker", "mse", 50, finished_at=finished, **{"test/mse": 4.252})
    cfc_run(root / "seed1", "walker", "mse", 50, seed=1, **{"test/mse": 4.0})
    assert main(["--runs", str(root), "--out", str(tmp_path / "t")]) == 0
    row = pd.read_csv(tmp_path / "t/walker.csv").set_index("experiment").loc["walker_cfc"]
    assert row["n"] == 2 and row["mean"] == pytest.approx(4.126)
    md = (tmp_path / "t/walker.md").read_text()
    ignored = ", ".join(str(root / f"copy{i}/metrics.json") for i in (3, 2, 1))
    line = f"- cfc (walker_cfc) seed 0: used {root / 'copy0/metrics.json'}; ignored {ignored}"
    assert "Seeds run more than once (one run counted):" in md and line in md
    assert f"seed run more than once: {line[2:]}" in capsys.readouterr().err


def test_timing_sweep_speed_up_on_one_row_per_preset(tmp_path: Path) -> None:
    """A preset's timing-sweep ratio belongs to one row (as preset), not to its REDUCED row
    too; the README names each timed row of a model by its budget."""
    root = tmp_path / "runs"
    reported = tmp_path / "reported.csv"
    reported.write_text(REPORTED)
    for seed in (0, 1):
        scored = {"test/accuracy": 0.99, "time/epoch_s": 2.0, "n_params": 1}
        cfc_run(root / f"cfc{seed}", "xor", "accuracy", 200, seed, **scored)
    record(
        root / "lstm",
        model="lstm",
        experiment="xor_lstm",
        **{"test/accuracy": 0.88, "time/epoch_s": 5.0, "n_params": 1},
    )
    record(
        root / "lstm_short",
        model="lstm",
        experiment="xor_lstm",
        epochs=5,
        **{"test/accuracy": 0.6, "time/epoch_s": 5.0, "n_params": 1},
    )
    (root / "multirun.yaml").write_text("hydra: {}\n")
    for model, seconds in (("cfc", 2.0), ("lstm", 1.0)):
        record(
            root / f"timing/xor/{model}",
            model=model,
            experiment=f"xor_{model}",
            epochs=3,
            **{"test/accuracy": 0.5, "time/epoch_s": seconds, "n_params": 1},
        )
    out = run_tables(root, reported, tmp_path)
    csv = pd.read_csv(out / "tables/xor.csv")
    lstm = csv[csv["model"] == "lstm"].set_index("budget")
    assert lstm.loc["as preset (200 epochs)", "paired_speedup"] == pytest.approx(0.5)
    assert pd.isna(lstm.loc["REDUCED: 5/200 epochs", "paired_speedup"])
    readme = (out / "README.md").read_text()
    assert readme.count("0.50x in the timing sweep") == 1
    assert "over lstm (as preset (200 epochs)) 0.50x in the timing sweep (paper 0.83x)" in readme
    assert "over lstm (REDUCED: 5/200 epochs) 2.50x (paper 0.83x)" in readme


def test_readme_lists_only_tasks_of_this_project(tmp_path: Path) -> None:
    reported = tmp_path / "reported.csv"
    reported.write_text(REPORTED + "imdb,cfc,cfc,accuracy_pct,88.0,0.1,0.5,Table 9,\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    text = (run_tables(empty, reported, tmp_path) / "README.md").read_text()
    assert "imdb" not in text and "**walker**: no runs committed" in text


def test_committed_results_are_written_only_with_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    record(
        runs / "cfc",
        model="cfc",
        experiment="xor_cfc",
        **{"test/accuracy": 0.9, "time/epoch_s": 1.0},
    )
    committed = tmp_path / "results/tables"
    committed.mkdir(parents=True)
    (committed / "xor.md").write_text("committed\n")
    for argv in (
        ["--out", "results/tables"],
        ["--out", str(committed)],
        ["--readme", "results/README.md"],
        ["--figures", "results/figures"],
    ):
        assert main(["--runs", "runs", *argv]) == 1
        err = capsys.readouterr().err
        assert "results/ holds the committed results" in err and "--committed" in err
    assert (committed / "xor.md").read_text() == "committed\n"
    assert not (tmp_path / "results/README.md").exists()
    assert main(["--runs", "runs"]) == 0  # scratch tables by default
    assert (tmp_path / "outputs/tables/xor.md").exists()
    assert (committed / "xor.md").read_text() == "committed\n"
    assert main(["--runs", "runs", "--out", "results/tables", "--committed"]) == 0
    assert (committed / "xor.md").read_text().startswith("## xor")


def test_far_out_points_leave_the_others_readable(tmp_path: Path) -> None:
    means = np.array([0.63, 0.60, 0.95, 1.09, 0.89, 121.4, 1.25])
    assert far_out(means).tolist() == [False] * 5 + [True, False]
    assert not far_out(np.array([50.0, 99.0, 96.0, 77.0, 85.0, 51.0])).any()
    assert not far_out(np.array([0.631, 0.80, 0.83, 0.82, 0.757])).any()  # not squashed
    assert (
        far_out(np.array([1.0, 1.1, 1.2, 1.3, 500.0, -400.0])).tolist() == [False] * 4 + [True] * 2
    )
    table = pd.DataFrame(
        {
            "status": "ran",
            "model": [f"m{i}" for i in range(len(means))],
            "device_name": "cpu-A",
            "mean": means,
            "std": [0.01] * 5 + [131.0, 0.03],
            "epoch_s": [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 200.0],
            "comparable": True,
        }
    )
    path = plot_metric_vs_time(table, "walker", "test MSE", tmp_path)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_rules_in_words_come_from_the_judging_functions() -> None:
    """results/README.md quotes each rule from its function, constants filled in."""
    assert rule(agreement).startswith("*agrees*: |ours − paper| ≤ 2·sqrt(s_ours² + s_paper²)")
    assert "differ by more than 1.25x" in rule(machine_drifted)
    assert "within a factor of 2 of each other" in rule(speed_claim)
    assert "\n" not in rule(speed_claim) and "{" not in rule(machine_drifted)


def test_unknown_metric_and_unreadable_outputs_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "runs"
    physionet_run(root / "garbled", 0, **{"test/auc": 0.8})
    (root / "garbled/test_outputs.npz").write_bytes(b"not a zip")
    record(root / "plugin", metric="f1", model="cfc", **{"test/f1": 0.5, "time/epoch_s": 1.0})
    assert main(["--runs", str(root), "--out", str(tmp_path / "t")]) == 0
    err = capsys.readouterr().err
    assert f"skipped {root / 'plugin/metrics.json'}: unknown metric 'f1'" in err
    assert f"skipped {root / 'garbled/test_outputs.npz'}: test/auprc not computed" in err
    row = pd.read_csv(tmp_path / "t/physionet.csv").set_index("experiment").loc["physionet_cfc"]
    assert row["n"] == 1 and pd.isna(row["auprc_mean"])


@pytest.mark.parametrize(
    "spreads,shown",
    [((1.1, 1.1), True), ((1.6, 1.5), False), ((None, None), False)],
    ids=["supported", "within-noise", "no-spread"],
)
def test_machine_ratio_shown_only_where_the_probe_spreads_support_it(
    tmp_path: Path, spreads: tuple, shown: bool
) -> None:
    """The LSTM's probe took twice CfC's: a real difference when the readings' spreads are
    tight (1.1 x 1.1 < 2), noise when they are wide (1.6 x 1.5 > 2) or unknown."""
    root = tmp_path / "runs"
    reported = tmp_path / "reported.csv"
    reported.write_text(REPORTED)
    (root / "multirun.yaml").parent.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    for model, probe, spread in (("cfc", 10.0, spreads[0]), ("lstm", 20.0, spreads[1])):
        extra = {} if spread is None else {"time/probe_spread": spread}
        record(
            root / model,
            model=model,
            experiment=f"xor_{model}",
            **{"test/accuracy": 0.9, "time/epoch_s": 3.0, "n_params": 1, "time/probe_ms": probe},
            **extra,
        )
    out = run_tables(root, reported, tmp_path)
    row = table_row((out / "tables/xor.md").read_text(), "lstm")
    assert ("(machine 2.00x slower than for CfC)" in row) is shown
    assert "| 1.00x" in row  # the speed-up itself is shown either way


def test_ran_only_leaves_out_the_paper_rows_without_runs(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    reported = tmp_path / "reported.csv"
    reported.write_text(REPORTED)
    cfc_run(root / "cfc", "xor", "accuracy", 200, **{"test/accuracy": 0.99, "n_params": 1})
    full, only = tmp_path / "full", tmp_path / "only"
    assert main(["--runs", str(root), "--reported", str(reported), "--out", str(full)]) == 0
    args = ["--runs", str(root), "--reported", str(reported), "--out", str(only), "--ran-only"]
    assert main(args) == 0
    assert "not run" in (full / "xor.md").read_text()
    rows = [line for line in (only / "xor.md").read_text().splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["cfc"]  # after the header
