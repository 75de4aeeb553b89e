"""`cfc-bench tables` on fixture results: exact tables beside the paper's numbers, budgets,
speed-ups, the README summary, figures, malformed files reported and skipped."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from cfc_bench.config import compose
from cfc_bench.report.cli import main
from cfc_bench.report.compare import load_reported
from cfc_bench.report.judge import agreement, speed_claim
from cfc_bench.report.presets import budget, compose_presets

REPO = Path(__file__).resolve().parents[1]

# Paper rows of the fixture: XOR (accuracy in percent) and one walker row (a task not run).
REPORTED = """\
task,model,our_model,metric,mean,std,minutes_per_epoch,source,note
xor,augmented_lstm,lstm,accuracy_pct,89.71,3.48,0.62,Table 4,copied
xor,ct_gru,,accuracy_pct,61.36,4.87,0.80,Table 4,copied
xor,gru_d,gru_d,accuracy_pct,97.90,1.71,0.58,Table 4,copied
xor,ode_rnn,ode_rnn,accuracy_pct,51.21,0.37,4.11,Table 4,copied
xor,cfc,cfc,accuracy_pct,99.42,0.42,0.75,Table 4,
walker,cfc,cfc,mse,0.643,0.006,0.08,Table 7,
"""

GOLDEN_MD = """\
## xor: test accuracy (%), mean ± std over seeds (n)

| model | preset | ours: test accuracy (%) | paper | ours - paper | agrees | time/epoch (s) | CfC speed-up | paper speed-up | params | budget | device |
|---|---|---|---|---|---|---|---|---|---|---|---|
| lstm (paper: augmented_lstm) | xor_lstm | 81.00 ± 1.41 (n=2) | 89.71 ± 3.48 | -8.71 | no (> 7.51) | 5 | 2.50x | 0.83x | 5,678 | as preset (200 epochs) | cpu-A |
| ct_gru | - | not run | 61.36 ± 4.87 | - | - | - | - | 1.07x | - | - | - |
| gru_d | - | failed | 97.90 ± 1.71 | - | - | - | - | 0.77x | - | - | - |
| ode_rnn | xor_ode_rnn | 50.00 (n=1) | 51.21 ± 0.37 | -1.21 | - | 20 | 10.00x | 5.48x | 999 | REDUCED: 5/200 epochs CHANGED: trainer.lr=0.01 (preset: 0.0005) | cpu-A |
| cfc | xor_cfc | 99.43 ± 0.40 (n=3) | 99.42 ± 0.42 | +0.01 | yes (≤ 1.17) | 2 | 1.00x | 1.00x | 1,234 | as preset (200 epochs) | cpu-A |
| ltc | - | 50.00 (n=1) | - | - | - | 30 | - | - | 99 | no preset: 5 epochs | cpu-B |

Failed runs:

- gru_d seed 0: TrainingError: non-finite loss (nan) at epoch 2, step 7 (RUNS/sweep/gru_d/seed0)
"""


def record(folder: Path, **values) -> None:
    base = {
        "task": "xor",
        "metric": "accuracy",
        "protocol": "paper",
        "seed": 0,
        "epochs": 200,
        "train_limit": None,
        "train_size": 100_000,
        "device_name": "cpu-A",
        "threads": 2,
    }
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({**base, **values}))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    sweep = root / "sweep"
    for seed, acc in enumerate([0.99, 0.995, 0.998]):
        record(
            sweep / f"cfc/seed{seed}",
            model="cfc",
            experiment="xor_cfc",
            seed=seed,
            **{"test/accuracy": acc, "time/epoch_s": 2.0, "n_params": 1234},
        )
    for seed, acc in enumerate([0.80, 0.82]):
        record(
            sweep / f"lstm/seed{seed}",
            model="lstm",
            experiment="xor_lstm",
            seed=seed,
            **{"test/accuracy": acc, "time/epoch_s": 5.0, "n_params": 5678},
        )
    # a smoke run with a resolved config: fewer epochs and another learning rate
    smoke = sweep / "ode_rnn/seed0"
    record(
        smoke,
        model="ode_rnn",
        experiment="xor_ode_rnn",
        epochs=5,
        **{"test/accuracy": 0.5, "time/epoch_s": 20.0, "n_params": 999},
    )
    cfg = compose(["experiment=xor_ode_rnn", "trainer.epochs=5", "trainer.lr=0.01", "seed=0"])
    (smoke / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    # another machine, no preset, not in a sweep: no CfC beside it, so no speed-up
    record(
        root / "single/ltc",
        model="ltc",
        experiment=None,
        epochs=5,
        device_name="cpu-B",
        **{"test/accuracy": 0.5, "time/epoch_s": 30.0, "n_params": 99},
    )
    (root / "broken").mkdir()
    (root / "broken/metrics.json").write_text('{"task": "xor", ')  # truncated JSON
    record(root / "partial", model="gru", **{"time/epoch_s": 1.0})  # no test metric
    (sweep / "gru_d/seed0").mkdir(parents=True)
    (sweep / "gru_d/seed0/failed.json").write_text(
        json.dumps(
            {
                "task": "xor",
                "model": "gru_d",
                "seed": 0,
                "reason": "TrainingError: non-finite loss (nan) at epoch 2, step 7",
            }
        )
    )
    return root


@pytest.fixture
def reported(tmp_path: Path) -> Path:
    path = tmp_path / "reported.csv"
    path.write_text(REPORTED)
    return path


def run_tables(runs: Path, reported: Path, tmp_path: Path) -> Path:
    out = tmp_path / "results"
    argv = ["--runs", str(runs), "--out", str(out / "tables"), "--reported", str(reported)]
    argv += ["--readme", str(out / "README.md"), "--figures", str(out / "figures")]
    assert main(argv) == 0
    return out


def test_golden_tables(
    runs: Path, reported: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = run_tables(runs, reported, tmp_path)
    printed = capsys.readouterr()
    expected = GOLDEN_MD.replace("RUNS", str(runs))
    assert (out / "tables/xor.md").read_text() == expected
    assert expected in printed.out
    assert f"skipped {runs}/broken/metrics.json" in printed.err
    assert f"skipped {runs}/partial/metrics.json: missing keys ['test/accuracy']" in printed.err

    csv = pd.read_csv(out / "tables/xor.csv")
    assert csv["model"].tolist() == ["lstm", "ct_gru", "gru_d", "ode_rnn", "cfc", "ltc"]
    assert csv["status"].tolist() == ["ran", "not run", "failed", "ran", "ran", "ran"]
    cfc = csv.set_index("model").loc["cfc"]
    assert cfc["mean"] == pytest.approx(99.4333, abs=1e-4)
    assert cfc["paper_mean"] == 99.42 and cfc["diff"] == pytest.approx(0.0133, abs=1e-4)
    assert bool(cfc["agrees"]) and bool(cfc["comparable"])
    lstm = csv.set_index("model").loc["lstm"]
    assert lstm["cfc_speedup"] == 2.5 and lstm["paper_speedup"] == pytest.approx(0.62 / 0.75)
    assert lstm["speed_claim"] == "does not reproduce"
    tex = (out / "tables/xor.tex").read_text()
    assert r"99.43 $\pm$ 0.40 (n=3)" in tex and r"\begin{tabular}" in tex and r"xor\_cfc" in tex
    assert r"yes ($\leq$ 1.17)" in tex


def test_readme_summary(runs: Path, reported: Path, tmp_path: Path) -> None:
    text = (run_tables(runs, reported, tmp_path) / "README.md").read_text()
    summary = text.split("## How to read")[0]
    xor = summary.split("**xor**:")[1].split("**physionet**")[0]
    assert (
        "- Reproduces (within the spread): cfc (ours 99.43 ± 0.40 (n=3), paper 99.42 ± 0.42)" in xor
    )
    assert (
        "- Does not reproduce: lstm (ours 81.00 ± 1.41 (n=2), paper 89.71 ± 3.48, ours worse)"
        in xor
    )
    assert "- CfC speed-up does not reproduce: over lstm 2.50x (paper 0.83x)" in xor
    assert "ode_rnn (REDUCED: 5/200 epochs" in xor and "ltc (no preset: 5 epochs)" in xor
    assert "- Paper rows without a run: ct_gru; gru_d (failed)" in xor
    for task in ("physionet", "person_activity", "walker", "et_smnist"):
        assert (
            f"**{task}**: no runs committed for task {task} (`make reproduce TASK={task}`)."
            in summary
        )
    assert "](tables/xor.md)" in text and "](figures/xor_metric_vs_time.png)" in text
    assert "| cfc | xor_cfc | 99.43 ± 0.40 (n=3) |" in text  # the table itself
    assert "`" + str(runs / "broken/metrics.json") + "`" in text  # unreadable files listed


def test_readme_without_runs(reported: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    text = (run_tables(empty, reported, tmp_path) / "README.md").read_text()
    for task in ("xor", "physionet", "person_activity", "walker", "et_smnist"):
        assert (
            f"**{task}**: no runs committed for task {task} (`make reproduce TASK={task}`)." in text
        )
    assert "## Table" not in text


def test_reduced_budget_rows_are_not_judged(reported: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in (0, 1):
        record(
            root / f"cfc{seed}",
            model="cfc",
            experiment="xor_cfc",
            seed=seed,
            epochs=2,
            train_limit=2000,
            train_size=2000,
            **{"test/accuracy": 0.5, "time/epoch_s": 1.0, "n_params": 1},
        )
    out = run_tables(root, reported, tmp_path)
    row = (out / "tables/xor.md").read_text().splitlines()[4 + 4]  # after 4 paper-only rows
    assert row.startswith("| cfc | xor_cfc | 50.00 ± 0.00 (n=2) | 99.42 ± 0.42 | -49.42 | - |")
    assert "| REDUCED: task.train_limit=2000; 2/200 epochs |" in row
    readme = (out / "README.md").read_text()
    assert "- Not judged: cfc (REDUCED: task.train_limit=2000; 2/200 epochs)" in readme
    assert "Reproduces" not in readme and "Does not reproduce" not in readme


def cfc_run(folder: Path, task: str, metric: str, epochs: int, seed: int = 0, **values) -> None:
    """A CfC run of the task's paper preset, one second per epoch."""
    record(
        folder,
        task=task,
        metric=metric,
        model="cfc",
        experiment=f"{task}_cfc",
        seed=seed,
        epochs=epochs,
        **{"time/epoch_s": 1.0, **values},
    )


def walker_cfc_runs(root: Path, scores: list[dict[str, float]]) -> Path:
    """One Walker2d CfC run of the paper preset per entry of ``scores`` (its metrics)."""
    for seed, metrics in enumerate(scores):
        cfc_run(root / f"cfc{seed}", "walker", "mse", 50, seed, **metrics)
    return root


def test_score_at_the_best_validation_epoch_gets_a_column(reported: Path, tmp_path: Path) -> None:
    """A column only where runs scored it (the golden XOR table has none)."""
    scores = [{"test/mse": 0.65, "test_at_best_val/mse": 0.64}]
    scores += [{"test/mse": 0.66, "test_at_best_val/mse": 0.62}]
    out = run_tables(walker_cfc_runs(tmp_path / "runs", scores), reported, tmp_path)
    lines = (out / "tables/walker.md").read_text().splitlines()
    assert "| agrees | ours at best-val epoch | time/epoch (s) |" in lines[2]
    assert "| 0.6550 ± 0.0071 (n=2) | 0.6430 ± 0.0060 | +0.0120 |" in lines[4]
    assert "| 0.6300 ± 0.0141 (n=2) | 1 |" in lines[4]  # beside, not in place of, the last's
    csv = pd.read_csv(out / "tables/walker.csv")
    assert csv["best_val_mean"].tolist() == pytest.approx([0.63])
    # the judgement stays on the last epoch's score, as the protocol says
    assert "| yes (≤ 0.0185) | 0.6300 ± 0.0141 (n=2) |" in lines[4]


def test_seeds_scattered_far_from_the_paper_do_not_agree(reported: Path, tmp_path: Path) -> None:
    """Three diverged seeds: the mean is within a tolerance their scatter made, no seed is."""
    scores = [{"test/mse": mse} for mse in (41.4, 50.3, 272.6)]
    out = run_tables(walker_cfc_runs(tmp_path / "runs", scores), reported, tmp_path)
    row = (out / "tables/walker.md").read_text().splitlines()[4]
    assert "| 121.4333 ± 130.9898 (n=3) | 0.6430 ± 0.0060 | +120.7903 |" in row
    assert "| no (no seed within ± 0.0170) |" in row
    csv = pd.read_csv(out / "tables/walker.csv")
    assert csv["tolerance"].tolist() == pytest.approx([2 * math.hypot(130.9898, 0.006)], rel=1e-5)
    assert csv["seed_tolerance"].tolist() == pytest.approx([2 * math.hypot(0.006, 0.006)], rel=1e-5)
    assert (
        "- Does not reproduce: cfc (ours 121.4333 ± 130.9898 (n=3)"
        in (out / "README.md").read_text()
    )


def test_figures_written(runs: Path, reported: Path, tmp_path: Path) -> None:
    figure = run_tables(runs, reported, tmp_path) / "figures/xor_metric_vs_time.png"
    data = figure.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_scaling_figures_of_bench_sweeps(
    runs: Path, reported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sweep CSVs are drawn by cfc_bench.bench.output.plot_sweep; single-size and broken ones are not."""
    from cfc_bench.bench import output as bench

    def plot_sweep(csv_path: Path, out_dir: Path) -> Path:
        kind = Path(csv_path).stem
        if kind == "single":
            raise bench.BenchError("not a sweep CSV")
        if kind == "broken":
            raise ValueError("no column train_ms")
        path = Path(out_dir) / "scaling_hidden.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")
        return path

    monkeypatch.setattr(bench, "plot_sweep", plot_sweep)
    bench_dir = tmp_path / "bench"
    bench_dir.mkdir()
    for name in ("broken", "single", "sweep"):
        (bench_dir / f"{name}.csv").write_text("x\n")
    out = tmp_path / "results"
    argv = ["--runs", str(runs), "--out", str(out / "tables"), "--reported", str(reported)]
    argv += ["--readme", str(out / "README.md"), "--figures", str(out / "figures")]
    assert main([*argv, "--bench", str(bench_dir)]) == 0
    text = (out / "README.md").read_text()
    assert "## Scaling" in text and "![scaling_hidden](figures/scaling_hidden.png)" in text
    assert f"- `{bench_dir / 'broken.csv'}`: no column train_ms" in text
    assert "single" not in text


@pytest.mark.parametrize(
    "scores,paper_mean,paper_std,tolerance,agrees",
    [
        ([98.7, 99.0, 99.3], 99.42, 0.42, 2 * math.hypot(0.3, 0.42), True),
        ([97.7, 98.0, 98.3], 99.42, 0.42, 2 * math.hypot(0.3, 0.42), False),
        ([99.0], 99.42, 0.42, 2 * math.hypot(0.42, 0.42), True),  # 1 seed: the paper's std
        ([96.0, 96.5, 97.0], 98.09, math.nan, 2 * math.hypot(0.5, 0.5), False),  # no paper std
        ([97.0], 98.09, math.nan, math.nan, None),  # no std at all: not judged
        ([96.5, 97.0, 97.5], math.nan, math.nan, math.nan, None),  # no paper number
        # Walker2d ODE-RNN diverged in every seed: the mean is within a tolerance of 261.9
        # that its own scatter made, but no seed is within 2·sqrt(2)·0.061 of the paper.
        ([41.4, 50.3, 272.6], 1.904, 0.061, 2 * math.hypot(131.0, 0.061), False),
        # a wide scatter with one seed close to the paper's mean still agrees
        ([1.85, 1.95, 2.6], 1.904, 0.061, 2 * math.hypot(0.407, 0.061), True),
    ],
)
def test_agreement(scores, paper_mean, paper_std, tolerance, agrees) -> None:
    tol, seed_tol, verdict = agreement(scores, paper_mean, paper_std)
    assert verdict is agrees
    assert tol == pytest.approx(tolerance, rel=2e-3, nan_ok=True)
    if not math.isnan(tol):
        s_paper = paper_std if not math.isnan(paper_std) else tol / 2 / math.sqrt(2)
        assert seed_tol == pytest.approx(2 * math.sqrt(2) * s_paper)


@pytest.mark.parametrize(
    "ours,paper,claim",
    [
        (5.0, 5.48, "reproduces"),
        (20.0, 5.48, "direction only"),
        (0.8, 5.48, "does not reproduce"),
        (0.9, 0.83, "reproduces"),
        (math.nan, 5.48, None),
    ],
)
def test_speed_claim(ours: float, paper: float, claim: str | None) -> None:
    assert speed_claim(ours, paper) == claim
    assert speed_claim(ours, paper, machine=1.2) == claim  # within the probe's tolerance
    assert speed_claim(ours, paper, machine=1.7) is None  # the machine ran 1.7x slower
    assert speed_claim(ours, paper, machine=1 / 1.7) is None


@pytest.mark.parametrize(
    "lstm_probe,cell,judged,machine",
    [
        # within the probes' own spread (1.05 x 1.05 > 1.05): no difference to tell
        (10.5, "2.50x", True, math.nan),
        (12.0, "2.50x", True, 1.2),  # a real difference, within MACHINE_TOLERANCE: judged
        (17.0, "2.50x (machine 1.70x slower than for CfC)", False, 1.7),
        (5.0, "2.50x (machine 2.00x faster than for CfC)", False, 0.5),
        (None, "2.50x", True, math.nan),  # a run from before the probe: nothing to tell
    ],
)
def test_speed_ups_of_runs_timed_at_another_machine_speed_are_not_judged(
    reported: Path,
    tmp_path: Path,
    lstm_probe: float | None,
    cell: str,
    judged: bool,
    machine: float,
) -> None:
    root = tmp_path / "runs"
    scored = {"test/accuracy": 0.9, "n_params": 1, "time/probe_spread": 1.05}
    for seed in (0, 1):
        timing = {"time/epoch_s": 2.0, "time/probe_ms": 9.0 if seed else 11.0}
        record(
            root / f"cfc{seed}", model="cfc", experiment="xor_cfc", seed=seed, **scored, **timing
        )
    probe = {} if lstm_probe is None else {"time/probe_ms": lstm_probe}
    timing = {"time/epoch_s": 5.0, **probe}
    record(root / "lstm", model="lstm", experiment="xor_lstm", **scored, **timing)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    out = run_tables(root, reported, tmp_path)
    row = (out / "tables/xor.md").read_text().splitlines()[4]
    assert row.startswith("| lstm (paper: augmented_lstm) |")
    assert f"| {cell} | 0.83x |" in row
    readme = (out / "README.md").read_text()
    assert ("CfC speed-up does not reproduce: over lstm 2.50x" in readme) is judged
    assert ("CfC speed-up not judged (machine speed differed" in readme) is not judged
    csv = pd.read_csv(out / "tables/xor.csv")
    assert csv.loc[csv["model"] == "lstm", "machine_ratio"].tolist() == pytest.approx(
        [machine], nan_ok=True
    )


def test_speed_claims_of_reduced_rows_are_judged(
    runs: Path, reported: Path, tmp_path: Path
) -> None:
    """Fewer epochs leave the time per epoch as it is: the speed claim is judged, the score
    is not."""
    record(
        runs / "sweep/gru_d/seed1",
        model="gru_d",
        experiment="xor_gru_d",
        epochs=5,
        **{"test/accuracy": 0.6, "time/epoch_s": 1.0, "n_params": 1},
    )
    out = run_tables(runs, reported, tmp_path)
    csv = pd.read_csv(out / "tables/xor.csv").set_index("model")
    assert csv.loc["gru_d", "budget"] == "REDUCED: 5/200 epochs"
    assert pd.isna(csv.loc["gru_d", "agrees"])
    assert csv.loc["gru_d", "speed_claim"] == "reproduces"
    assert (
        "- CfC speed-up reproduces: over gru_d 0.50x (paper 0.77x)"
        in (out / "README.md").read_text()
    )


def test_timing_sweep_gives_the_judged_speed_up(runs: Path, reported: Path, tmp_path: Path) -> None:
    """Runs under timing/<task> (make retime) are no rows; their ratio is judged instead."""
    timing = runs / "timing/xor"
    short = {"epochs": 3, "test/accuracy": 0.5}
    # gru_d: timed, but its row has no full run (it failed)
    timed = (("cfc", 2.0, 10.0), ("lstm", 1.0, 11.0), ("ode_rnn", 8, 10), ("gru_d", 8, 10))
    for model, seconds, probe in timed:
        record(
            timing / f"{model}/seed0",
            model=model,
            experiment=f"xor_{model}",
            **short,
            **{"time/epoch_s": seconds, "time/probe_ms": probe, "n_params": 1},
            **{"time/probe_spread": 1.02},  # tight readings: 11 ms over 10 ms is real
        )
    for model, seconds in (("cfc", 4.0), ("gru_d", 8.0)):  # a second round (RETIME_SEEDS=1)
        record(
            timing / f"{model}/seed1",
            model=model,
            experiment=f"xor_{model}",
            seed=1,
            **short,
            **{"time/epoch_s": seconds, "time/probe_ms": 10.0, "n_params": 1},
            **{"time/probe_spread": 1.02},
        )
    (timing / "multirun.yaml").write_text("hydra: {}\n")
    # a timing run of another setting pairs with nothing
    record(
        runs / "timing/xor/lstm_torch/seed0",
        model="lstm",
        experiment="xor_lstm",
        protocol="default",
        **short,
        **{"time/epoch_s": 50.0, "n_params": 1},
    )
    out = run_tables(runs, reported, tmp_path)
    lines = (out / "tables/xor.md").read_text().splitlines()
    assert "| CfC speed-up | CfC speed-up, timing sweep | paper speed-up |" in lines[2]
    lstm, gru_d, ode_rnn, ode_rnn_preset, cfc = lines[4], lines[6], lines[7], lines[8], lines[9]
    assert "| 81.00 ± 1.41 (n=2) |" in lstm  # the timing runs' scores are not among the seeds
    # A row without a full run still shows its preset's timing-sweep speed-up, and is judged;
    # each round is divided by its own CfC: (8/2 + 8/4) / 2, not 8 / mean(2, 4).
    assert gru_d.startswith("| gru_d | - | failed |") and "| - | 3.00x | 0.77x |" in gru_d
    assert "| 2.50x | 0.50x | 0.83x |" in lstm
    assert "| 10.00x | - | 5.48x |" in ode_rnn  # its row changed the learning rate
    # ...so its preset's timing (8 s over CfC's 2 s) gets a row of its own, judged
    assert ode_rnn_preset.startswith("| ode_rnn | - | not run as preset | 51.21 ± 0.37 |")
    assert "| - | 4.00x | 5.48x |" in ode_rnn_preset
    assert "| 1.00x | 1.00x | 1.00x |" in cfc
    readme = (out / "README.md").read_text()
    assert "- CfC speed-up reproduces: over lstm 0.50x in the timing sweep (paper 0.83x)" in readme
    # the summary judges a timed preset whose row has no full run as well
    assert "- CfC speed-up does not reproduce: over gru_d 3.00x in the timing sweep" in readme
    assert "; over ode_rnn 4.00x in the timing sweep (paper 5.48x)" in readme
    assert "- Paper rows without a run: ct_gru; gru_d (failed); ode_rnn (only runs of" in readme
    csv = pd.read_csv(out / "tables/xor.csv").set_index("model")
    assert csv.loc["lstm", "paired_speedup"] == pytest.approx(0.5)
    assert csv.loc["lstm", "paired_machine_ratio"] == pytest.approx(1.1)
    assert csv.loc["lstm", "paired_n"] == 1
    assert csv.loc["lstm", "speed_claim"] == "reproduces"
    assert len(csv.loc["lstm"].shape) == 1  # one lstm row: the timing runs add none
    assert csv.loc["gru_d", "speed_claim"] == "does not reproduce"  # 3.00x against 0.77x
    assert csv.loc["gru_d", "paired_n"] == 2


def test_committed_reported_numbers_in_shown_units() -> None:
    table = load_reported(REPO / "results/paper/reported.csv")
    assert table["source"].notna().all()
    row = table.set_index(["task", "model"])
    assert row.loc[("xor", "cfc"), "mean"] == 99.42  # percent already
    assert row.loc[("person_activity", "ode_rnn"), "mean"] == pytest.approx(82.9)  # fraction
    assert row.loc[("person_activity", "ode_rnn"), "std"] == pytest.approx(1.6)
    assert row.loc[("walker", "cfc"), "mean"] == 0.643
    assert row.loc[("xor", "augmented_lstm"), "our_model"] == "lstm"
    assert set(table["metric"]) == {"accuracy", "auc", "mse"}


def test_bad_reported_file_is_an_error(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("task,model,metric,mean\nxor,cfc,accuracy_pct,99\n")
    argv = ["--runs", str(runs), "--out", str(tmp_path / "t"), "--reported", str(bad)]
    assert main(argv) == 1
    assert "missing columns ['our_model', 'std', 'minutes_per_epoch', 'source']" in (
        capsys.readouterr().err
    )


def test_missing_folder_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--runs", str(tmp_path / "nope"), "--out", str(tmp_path / "t")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_empty_folder_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--runs", str(tmp_path), "--out", str(tmp_path / "t")]) == 0
    assert "no metrics.json found" in capsys.readouterr().err


def test_seeds_on_other_machines_pool_their_scores_but_not_their_times(tmp_path: Path) -> None:
    """A seed run on another machine joins its row's mean ± std; its time is divided only by
    CfC's on its own machine (none here), and a run whose pieces ran on two machines
    (``device_names``) has no speed-up at all."""
    root = tmp_path / "runs"
    sweep = root / "sweep"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    record(
        sweep / "cfc/seed0",
        model="cfc",
        experiment="xor_cfc",
        **{"test/accuracy": 0.99, "time/epoch_s": 2.0, "n_params": 1},
    )
    for seed, acc, machine, names in (
        (0, 0.80, "cpu-A", ["cpu-A"]),
        (1, 0.84, "cpu-A", ["cpu-B", "cpu-A"]),  # started on cpu-B, finished on cpu-A
        (2, 0.82, "cpu-B", ["cpu-B"]),
    ):
        record(
            sweep / f"lstm/seed{seed}",
            model="lstm",
            experiment="xor_lstm",
            seed=seed,
            device_name=machine,
            device_names=names,
            **{"test/accuracy": acc, "time/epoch_s": 6.0, "n_params": 2},
        )
    out = tmp_path / "tables"
    assert main(["--runs", str(root), "--out", str(out)]) == 0
    table = pd.read_csv(out / "xor.csv").set_index("model")
    lstm = table.loc["lstm"]
    assert (lstm["n"], lstm["device_name"]) == (3, "cpu-A; cpu-B")
    assert lstm["mean"] == pytest.approx(82.0) and lstm["std"] == pytest.approx(2.0)
    assert lstm["cfc_speedup"] == pytest.approx(3.0)  # seed 0 alone: 6 s over CfC's 2 s


def test_diagnostic_runs_from_a_second_folder_are_their_own_rows(
    runs: Path, reported: Path, tmp_path: Path
) -> None:
    """`--runs results/runs results/diagnostics`: a diagnostic sweep (here CfC at another
    learning rate) is a CHANGED row beside the preset's, not judged and not averaged in."""
    diagnostics = tmp_path / "diagnostics"
    sweep = diagnostics / "lr_high" / "xor"
    for seed, acc in enumerate([0.90, 0.92]):
        folder = sweep / f"cfc/seed{seed}"
        record(
            folder,
            model="cfc",
            experiment="xor_cfc",
            seed=seed,
            **{"test/accuracy": acc, "time/epoch_s": 4.0, "n_params": 1234},
        )
        cfg = compose(["experiment=xor_cfc", "trainer.lr=0.01", f"seed={seed}"])
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    out = tmp_path / "results"
    argv = ["--runs", str(runs), str(diagnostics), "--out", str(out / "tables")]
    argv += ["--reported", str(reported), "--readme", str(out / "README.md")]
    assert main(argv) == 0
    table = pd.read_csv(out / "tables" / "xor.csv")
    cfc = table[table["model"] == "cfc"].set_index("budget")
    assert list(cfc["n"]) == [3, 2]  # the preset's row first, as before
    assert cfc.loc["as preset (200 epochs)", "mean"] == pytest.approx(99.433, abs=1e-3)
    changed = cfc.loc["CHANGED: trainer.lr=0.01 (preset: 0.05)"]
    assert changed["mean"] == pytest.approx(91.0)
    assert pd.isna(changed["agrees"])
    assert changed["cfc_speedup"] == pytest.approx(1.0)  # its own sweep's CfC, not the preset's
    assert f"under `{runs}` and `{diagnostics}`" in (out / "README.md").read_text()


def test_task_whose_runs_all_failed_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "runs" / "walker_ltc"
    folder.mkdir(parents=True)
    (folder / "failed.json").write_text(
        json.dumps({"task": "walker", "model": "ltc", "seed": 1, "reason": "TrainingError: nan"})
    )
    assert main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert "## walker: no finished runs" in out
    assert f"- ltc seed 1: TrainingError: nan ({folder})" in out


def test_demo_runs_are_not_judged_against_the_paper(tmp_path: Path) -> None:
    """The demo preset fixes no model: each run is compared with demo + its own model."""
    root = tmp_path / "runs"
    for model, acc in (("cfc", 0.5), ("lstm", 0.77)):
        record(
            root / "demo" / model,
            model=model,
            experiment="demo",
            protocol="default",
            epochs=4,
            **{"test/accuracy": acc, "time/epoch_s": 2.0, "n_params": 10},
        )
    out = tmp_path / "tables"
    assert main(["--runs", str(root), "--out", str(out)]) == 0
    table = pd.read_csv(out / "xor.csv").set_index("model")
    for model in ("cfc", "lstm"):
        assert table.loc[model, "budget"] == "as preset (4 epochs); not the paper preset"
        assert pd.isna(table.loc[model, "agrees"])


def test_setting_newer_than_a_run_counts_as_its_default() -> None:
    """A run recorded before trainer.rmsprop_alpha existed ran with torch's 0.99."""
    presets = compose_presets({("physionet_cfc", "cfc"), ("xor_cfc", "cfc")})
    for preset, model, expected in (
        (
            "physionet_cfc",
            "cfc",
            ("as preset (57 epochs)", True, False),
        ),  # AdamW: alpha left at 0.99
        ("xor_cfc", "cfc", ("CHANGED: trainer.rmsprop_alpha=0.99 (preset: 0.9)", False, True)),
    ):
        config = OmegaConf.to_container(OmegaConf.structured(compose([f"experiment={preset}"])))
        del config["trainer"]["rmsprop_alpha"]
        run = {"experiment": preset, "seed": 0, "config": OmegaConf.create(config)}
        assert budget(run, presets[preset, model]) == expected


def old_run(preset: str, drop: dict[str, list[str]], **replace: object) -> dict:
    """A run of ``preset`` made before some of its settings existed (``drop``: group -> keys
    absent from its config.yaml) or with other values (``replace``: group -> node)."""
    config = OmegaConf.to_container(OmegaConf.structured(compose([f"experiment={preset}"])))
    for group, keys in drop.items():
        for key in keys:
            del config[group][key]
    config.update(replace)
    return {"experiment": preset, "seed": 0, "config": OmegaConf.create(config)}


def test_runs_before_the_reference_exact_presets_are_changed_rows() -> None:
    """Runs made before a preset took a reference-exact variant lack its key: compared with
    the key's default (the old behaviour), they are CHANGED rows, never "as preset"."""
    pairs = {("walker_cfc_mmrnn", "cfc_mmrnn"), ("walker_ode_rnn", "ode_rnn")}
    presets = compose_presets(pairs)
    mmrnn = old_run("walker_cfc_mmrnn", {"model": ["coupling"], "trainer": ["l2_kernel"]})
    mmrnn["config"].trainer.weight_decay = 6e-06
    assert budget(mmrnn, presets["walker_cfc_mmrnn", "cfc_mmrnn"]) == (
        "CHANGED: model.coupling=pytorch (preset: tensorflow); trainer.l2_kernel=0.0 (preset: "
        "6e-06); trainer.weight_decay=6e-06 (preset: 0.0)",
        False,
        True,
    )
    # The ODE-RNN preset runs ct_rnn under the row's name; the GRU-based ode_rnn run before
    # it differs in its model, and a run of the preset as it stands is the preset's.
    gru_based = compose(["model=ode_rnn"]).model
    old = old_run(
        "walker_ode_rnn", {}, model=OmegaConf.to_container(OmegaConf.structured(gru_based))
    )
    text, matches, changed = budget(old, presets["walker_ode_rnn", "ode_rnn"])
    assert text.startswith("CHANGED: model.ode.activation=tanh (preset: -)") and changed
    assert "model.tau=1.0 (preset: 0.0)" in text and not matches
    assert budget(old_run("walker_ode_rnn", {}), presets["walker_ode_rnn", "ode_rnn"]) == (
        "as preset (200 epochs)",
        True,
        False,
    )


def test_committed_tables_are_what_make_tables_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """results/tables/*.md are generated, never edited: rebuilt from the committed runs as
    `make tables` builds them, they come out the same (a run committed without `make tables`
    after it fails here)."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "tables"
    argv = ["--runs", "results/runs", "results/diagnostics", "--out", str(out)]
    assert main([*argv, "--reported", "results/paper/reported.csv"]) == 0
    committed = sorted(p.name for p in (REPO / "results/tables").glob("*.md"))
    assert sorted(p.name for p in out.glob("*.md")) == committed
    for name in committed:
        assert (out / name).read_text() == (REPO / "results/tables" / name).read_text(), name
