"""logger=wandb, offline (no network): what each job writes under <run dir>/wandb."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from runs import SLOW_EPOCHS, TIMEOUT, cli, offline_runs, read_json, start, wait_into_epoch

from cfc_bench.config import compose
from cfc_bench.run.loggers import WandbLogger


def test_sweep_job_stopped_by_sigterm_resumes_and_continues_its_wandb_run(tmp_path: Path) -> None:
    # As on a cluster: SIGTERM before pre-emption, then the same sweep launched again.
    sweep = tmp_path / "sweep"
    args = ("train", "-m", *SLOW_EPOCHS, "logger=wandb", "seed=3", f"hydra.sweep.dir={sweep}")
    run_dir = sweep / "0_xor_cfc_seed3"
    proc = start(*args, cwd=tmp_path)  # WANDB_MODE unset: offline is the default
    wait_into_epoch(proc, run_dir, done=1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 128 + signal.SIGTERM
    assert f"To resume, launch the sweep again with hydra.sweep.dir={sweep}" in out
    resumed = cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_json(sweep / "summary.json")["done"] == ["0_xor_cfc_seed3"]

    stopped, continued = offline_runs(run_dir)
    assert stopped["id"] == continued["id"]  # one wandb run across the interruption
    assert (stopped["exit_code"], continued["exit_code"]) == (128 + signal.SIGTERM, 0)
    assert [row["epoch"] for row in stopped["history"]] == [1]
    assert [row["epoch"] for row in continued["history"]] == [2, 3, 4]
    assert [row["_step"] for row in continued["history"]] == [2, 3, 4]
    assert {"train_loss", "lr", "epoch_s", "step_ms"} <= set(continued["history"][0])

    assert (continued["project"], continued["group"]) == ("cfc-bench", "xor/cfc")
    assert set(continued["tags"]) == {"xor", "cfc", "seed=3"}
    config = continued["config"]
    assert config["seed"] == 3 and config["trainer"]["threads"] == 1
    assert config["model"]["hidden"] == 8 and config["logger"]["mode"] == "offline"
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["resumes"] == 1
    for key in ("test/accuracy", "test_loss", "time/epoch_s", "time/step_ms", "resumes"):
        assert continued["summary"][key] == metrics[key]


def test_wandb_mode_from_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger = WandbLogger(compose(["logger=wandb", "logger.mode=online"]), None, tmp_path)
    try:
        assert logger.run.settings.mode == "disabled"
    finally:
        logger.finish(exit_code=0)
    assert not list(tmp_path.rglob("*.wandb"))  # nothing written, nothing sent
