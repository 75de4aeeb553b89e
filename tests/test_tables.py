"""`cfc-bench tables` on fixture results: exact output, malformed files reported and skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cfc_bench.tables import main

GOLDEN_MD = """\
## xor: test accuracy (%), mean ± std over seeds

| model | experiment | test accuracy (%) | time/epoch (s) | CfC speed-up | params | epochs | train size | device |
|---|---|---|---|---|---|---|---|---|
| cfc | xor_cfc | 98.00 ± 1.00 (n=3) | 2 | 1.00x | 1,234 | 5 | 100 | cpu-A |
| lstm | xor_lstm | 90.00 ± 2.83 (n=2) | 5 | 2.50x | 5,678 | 5 | 100 | cpu-A |
| ltc | - | 50.00 (n=1) | 30 | - | 99 | 5 | 100 | cpu-B |

Failed runs:

- ode_rnn seed 0: TrainingError: non-finite loss (nan) at epoch 2, step 7 (RUNS/ode_rnn)
"""


def record(root: Path, name: str, **values) -> None:
    base = {
        "task": "xor",
        "metric": "accuracy",
        "seed": 0,
        "time/step_ms": 1.0,
        "epochs": 5,
        "train_size": 100,
        "device_name": "cpu-A",
    }
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({**base, **values}))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for seed, acc in enumerate([0.97, 0.98, 0.99]):
        record(
            root,
            f"sweep/{seed}_cfc",
            model="cfc",
            experiment="xor_cfc",
            seed=seed,
            **{"test/accuracy": acc, "time/epoch_s": 2.0, "n_params": 1234},
        )
    for seed, acc in enumerate([0.88, 0.92]):
        record(
            root,
            f"sweep/{seed}_lstm",
            model="lstm",
            experiment="xor_lstm",
            seed=seed,
            **{"test/accuracy": acc, "time/epoch_s": 5.0, "n_params": 5678},
        )
    # another machine: no CfC measured there, so no speed-up is claimed
    record(
        root,
        "single/ltc",
        model="ltc",
        experiment=None,
        device_name="cpu-B",
        **{"test/accuracy": 0.5, "time/epoch_s": 30.0, "n_params": 99},
    )
    (root / "broken").mkdir()
    (root / "broken/metrics.json").write_text('{"task": "xor", ')  # truncated JSON
    record(root, "partial", model="gru", **{"time/epoch_s": 1.0})  # no test metric
    (root / "ode_rnn").mkdir()
    (root / "ode_rnn/failed.json").write_text(
        json.dumps(
            {
                "task": "xor",
                "model": "ode_rnn",
                "seed": 0,
                "reason": "TrainingError: non-finite loss (nan) at epoch 2, step 7",
            }
        )
    )
    return root


def test_golden_tables(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "tables"
    assert main(["--runs", str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    expected = GOLDEN_MD.replace("RUNS", str(runs))
    assert (out / "xor.md").read_text() == expected
    assert expected in printed.out
    assert f"skipped {runs}/broken/metrics.json" in printed.err
    assert f"skipped {runs}/partial/metrics.json: missing keys ['test/accuracy']" in printed.err

    csv = pd.read_csv(out / "xor.csv")
    assert csv["model"].tolist() == ["cfc", "lstm", "ltc"]
    assert csv["CfC speed-up"].tolist() == ["1.00x", "2.50x", "-"]
    tex = (out / "xor.tex").read_text()
    assert r"98.00 $\pm$ 1.00 (n=3)" in tex and r"\begin{tabular}" in tex and r"xor\_cfc" in tex


def test_missing_folder_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--runs", str(tmp_path / "nope"), "--out", str(tmp_path / "t")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_empty_folder_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--runs", str(tmp_path), "--out", str(tmp_path / "t")]) == 0
    assert "no metrics.json found" in capsys.readouterr().err
