"""The `cfc-bench` command as a user runs it: subprocesses, exit codes, files written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

TINY = [
    "task=xor",
    "task.train_samples=128",
    "task.test_samples=64",
    "trainer.epochs=2",
    "model.hidden=8",
    "trainer.threads=1",
]


def cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cfc_bench.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_help_lists_subcommands(tmp_path: Path) -> None:
    out = cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    for command in ("train", "tables", "data", "bench"):
        assert f"  {command} " in out.stdout


def test_unknown_subcommand(tmp_path: Path) -> None:
    out = cli("fly", cwd=tmp_path)
    assert out.returncode == 2 and "unknown command 'fly'" in out.stderr


def test_train_help_shows_groups(tmp_path: Path) -> None:
    out = cli("train", "--help", cwd=tmp_path)
    assert out.returncode == 0
    assert "model: " in out.stdout and "cfc, cfc_mmrnn" in out.stdout
    assert "task: " in out.stdout and "xor" in out.stdout
    assert not (tmp_path / "outputs").exists()  # --help creates no run folder


def test_joblib_sweep_then_tables(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    out = cli(
        "train",
        "-m",
        "model=cfc,lstm",
        *TINY,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = sorted(p.relative_to(sweep).as_posix() for p in sweep.rglob("metrics.json"))
    assert metrics == ["0_xor_cfc_seed0/metrics.json", "1_xor_lstm_seed0/metrics.json"]
    assert "Warning" not in out.stderr  # no Hydra migration warnings

    tables = tmp_path / "tables"
    out = cli("tables", "--runs", str(sweep), "--out", str(tables), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "outputs").exists()  # tables makes no Hydra folder
    table = pd.read_csv(tables / "xor.csv")
    ran = table[table["n"] > 0]
    assert ran["model"].tolist() == ["cfc", "lstm"]
    assert ran["cfc_speedup"].iloc[0] == 1.0 and ran["cfc_speedup"].iloc[1] > 0
    assert "| cfc |" in out.stdout and "| lstm |" in out.stdout


@pytest.mark.parametrize(
    "override,message",
    [
        ("model=nope", "Available options in 'model'"),
        ("trainer.epochs=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
        ("model.no_such_key=1", "no_such_key"),
        ("trainer.optimizer=sgd", "Invalid value 'sgd'"),
        ("device=tpu", "device='tpu'"),
    ],
)
def test_bad_input_fails_cleanly(tmp_path: Path, override: str, message: str) -> None:
    run_dir = tmp_path / "run"
    out = cli("train", *TINY, override, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not list(tmp_path.rglob("metrics.json"))
