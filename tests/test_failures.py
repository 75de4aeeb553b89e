"""Failed runs: a diverging loss is reported with its epoch and step, recorded in failed.json,
listed by `cfc-bench tables`, and a failed job of a sweep does not stop the others."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from runs import TINY, cli, offline_runs, read_json, table_row

from cfc_bench.config import compose
from cfc_bench.errors import TrainingError
from cfc_bench.models.base import SequenceModel
from cfc_bench.run.callbacks import finished, summarise
from cfc_bench.run.job import train

# Epoch 1 trains normally; then the learning rate is multiplied by 1e40 (to 1e37), and the
# weights overflow within a few steps of epoch 2 (4 steps of 32 sequences per epoch).
DIVERGE = ["trainer.batch_size=32", "trainer.lr=0.001", "trainer.decay=1e40"]
NON_FINITE = re.compile(r"non-finite training loss \((nan|inf)\) at epoch 2, step (\d) of 4")


def test_non_finite_loss_stops_run_with_epoch_and_step(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    out = cli("train", *TINY, *DIVERGE, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert out.returncode == 1
    found = NON_FINITE.search(out.stderr)
    assert found, out.stderr[-3000:]
    assert "lower trainer.lr or set trainer.clip_norm" in out.stderr  # diverged while learning
    assert "of 4, from the task loss: " in out.stderr  # the term that is not finite, named
    assert out.stderr.startswith("cfc-bench train: error: ") and "Traceback" not in out.stderr
    failed = read_json(run_dir / "failed.json")
    assert failed["reason"].startswith("TrainingError: non-finite training loss")
    assert (failed["epoch"], failed["step"], failed["epochs_completed"]) == (2, int(found[2]), 1)
    assert (failed["task"], failed["model"], failed["seed"]) == ("xor", "cfc", 0)
    assert "decay: 1.0e+40" in failed["config"]  # the run's full config, resolved
    assert not (run_dir / "metrics.json").exists()
    assert "run failed: TrainingError: non-finite" in (run_dir / "train.log").read_text()


def test_failed_job_does_not_stop_sweep_and_is_summarised(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    # Job 0 diverges, job 1 (decay 1.0) is fine and runs after it.
    args = ("train", "-m", *TINY, *DIVERGE, "trainer.decay=1e40,1.0", f"hydra.sweep.dir={sweep}")
    out = cli(*args, "logger=wandb", cwd=tmp_path)
    assert out.returncode == 1
    assert "cfc-bench train: 1 failed and 0 incomplete of 2 jobs" in out.stderr
    assert "1 done, 0 skipped (done before), 1 failed, 0 incomplete" in out.stdout
    assert re.search(r"failed: 0_xor_cfc_seed0: TrainingError: non-finite", out.stdout)
    summary = read_json(sweep / "summary.json")
    assert summary["done"] == ["1_xor_cfc_seed0"] and summary["skipped"] == []
    assert [f["job"] for f in summary["failed"]] == ["0_xor_cfc_seed0"]
    assert NON_FINITE.search(summary["failed"][0]["reason"]) and summary["failed"][0]["epoch"] == 2
    assert (sweep / "1_xor_cfc_seed0" / "metrics.json").exists()
    assert not (sweep / "0_xor_cfc_seed0" / "metrics.json").exists()
    # One wandb run per job (both ran in this process), each closed with its outcome.
    (failed,) = offline_runs(sweep / "0_xor_cfc_seed0")
    (done,) = offline_runs(sweep / "1_xor_cfc_seed0")
    assert failed["id"] != done["id"] and (failed["exit_code"], done["exit_code"]) == (1, 0)
    assert [row["epoch"] for row in failed["history"]] == [1]
    assert [row["epoch"] for row in done["history"]] == [1, 2]
    assert (failed["config"]["trainer"]["decay"], done["config"]["trainer"]["decay"]) == (1e40, 1)

    tables = cli("tables", "--runs", str(sweep), "--out", str(tmp_path / "tables"), cwd=tmp_path)
    assert tables.returncode == 0, tables.stderr
    accuracy = read_json(sweep / "1_xor_cfc_seed0" / "metrics.json")["test/accuracy"]
    assert f"| {100 * accuracy:.2f} (n=1) |" in table_row(tables.stdout, "cfc")
    assert "Failed runs:" in tables.stdout
    assert re.search(
        r"- cfc seed 0: TrainingError: non-finite training loss .* at epoch 2", tables.stdout
    )

    # Launched again: the finished job returns at once, the failed one is tried again.
    stamp = (sweep / "1_xor_cfc_seed0" / "metrics.json").stat().st_mtime_ns
    record_files = [*(sweep / "1_xor_cfc_seed0" / ".hydra").iterdir()]
    record = {p: p.read_bytes() for p in [*record_files, sweep / "1_xor_cfc_seed0" / "train.log"]}
    again = cli(*args, "logger=wandb", cwd=tmp_path)
    assert again.returncode == 1
    assert "metrics.json exists: skipping this run" in again.stdout
    summary = read_json(sweep / "summary.json")
    assert summary["skipped"] == ["1_xor_cfc_seed0"] and summary["done"] == []
    assert [f["job"] for f in summary["failed"]] == ["0_xor_cfc_seed0"]
    assert (sweep / "1_xor_cfc_seed0" / "metrics.json").stat().st_mtime_ns == stamp
    # The skipped job's record (Hydra's .hydra files, its log) is as its own run left it.
    assert len(record) == 4 and all(p.read_bytes() == b for p, b in record.items())


def test_summary_sorts_jobs_by_outcome(tmp_path: Path) -> None:
    for job in ("0_old", "1_new", "2_bad", "3_stopped", "4_garbled"):
        (tmp_path / job / ".hydra").mkdir(parents=True)
    (tmp_path / "0_old" / "metrics.json").write_text("{}")
    before = finished(tmp_path)
    (tmp_path / "1_new" / "metrics.json").write_text("{}")
    (tmp_path / "2_bad" / "failed.json").write_text(json.dumps({"reason": "boom", "epoch": 3}))
    (tmp_path / "4_garbled" / "failed.json").write_text("{not json")
    (tmp_path / "1_new" / "wandb").mkdir()  # folders without .hydra are not jobs
    summary = summarise(tmp_path, before)
    assert summary["jobs"] == 5
    assert (summary["done"], summary["skipped"]) == (["1_new"], ["0_old"])
    assert summary["failed"][0] == {"job": "2_bad", "reason": "boom", "epoch": 3}
    assert summary["failed"][1]["reason"].startswith("unreadable failed.json")
    assert summary["incomplete"] == ["3_stopped"]


def test_non_finite_first_forward_pass_blames_the_inputs_not_the_learning_rate(
    tmp_path: Path,
) -> None:
    # Cf-S with weights of ~1e37: exp(-dt·|p|) underflows to 0 where p overflows, 0·inf is
    # NaN in the very first forward pass, before any update.
    bad = ["model.mode=pure", "model.init_gain=1e38"]
    out = cli("train", *TINY, *bad, f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert out.returncode == 1
    assert re.search(r"non-finite training loss \((nan|inf)\) at epoch 1, step 1 of", out.stderr)
    assert "very first forward pass" in out.stderr and "lower trainer.lr" not in out.stderr


def test_non_finite_auxiliary_loss_is_named_as_the_culprit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model's own objective (a Latent ODE's ELBO, say) that overflows is told apart from
    the task's loss and the L2 penalty, both finite here."""
    monkeypatch.setattr(SequenceModel, "auxiliary_loss", lambda self: torch.tensor(math.inf))
    cfg = compose(
        [
            "task=xor",
            "task.train_samples=64",
            "task.test_samples=64",
            "trainer.batch_size=32",
            "trainer.l2_kernel=1e-6",
            "device=cpu",
        ]
    )
    with pytest.raises(
        TrainingError,
        match=r"\(inf\) at epoch 1, step 1 of 2, from the "
        r"model's auxiliary loss: the very first forward pass",
    ):
        train(cfg, tmp_path / "run", experiment=None, config_yaml="x: 1\n")


def test_setting_out_of_range_in_a_sweep_fails_that_job_only(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ("train", "-m", *TINY, "trainer.lr=-0.1,0.01", f"hydra.sweep.dir={sweep}")
    out = cli(*args, cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    summary = read_json(sweep / "summary.json")
    assert summary["done"] == ["1_xor_cfc_seed0"]
    (failed,) = summary["failed"]
    assert failed["job"] == "0_xor_cfc_seed0"
    assert failed["reason"] == (
        "ConfigError: trainer.lr=-0.1 is out of range: trainer.lr must be > 0"
    )


def test_a_missing_dataset_is_installed_once(tmp_path: Path) -> None:
    """MNIST without its training images: one attempt to install it, one error naming them."""
    (tmp_path / "mirror" / "mnist").mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / "mirror" / "mnist" / name).write_bytes(b"")
    data = [f"data.root={tmp_path / 'data'}", f"data.mirror={tmp_path / 'mirror'}"]
    out = cli("train", "task=et_smnist", *data, f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert out.returncode == 1
    assert "MNIST file(s) missing: train-images-idx3-ubyte.gz" in out.stderr
    assert out.stdout.count("installing it") == 1
