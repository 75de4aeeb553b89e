"""Training on a reduced XOR: recorded results, learning, determinism."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from cfc_bench.config import compose
from cfc_bench.run.job import train
from cfc_bench.run.trainer import make_optimizer
from cfc_bench.text import plural

# 256 training sequences seen 30 times: small enough for seconds, long enough to fit them.
SMALL = [
    "task=xor",
    "task.train_samples=256",
    "task.test_samples=256",
    "trainer.epochs=30",
    "trainer.batch_size=64",
    "trainer.lr=0.01",
    "trainer.progress=false",
    "device=cpu",
]


def run(tmp_path: Path, name: str, *overrides: str) -> dict:
    cfg = compose([*SMALL, *overrides])
    return train(cfg, tmp_path / name, experiment=None, config_yaml="x: 1\n")


@pytest.fixture(scope="module")
def cfc_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("cfc")
    # Batches of 32 at lr 0.005: 240 updates, for a clear fall of the training loss.
    cfc = ["model=cfc", "model.hidden=16", "model.backbone_units=32"]
    metrics = run(out, "run", *cfc, "trainer.batch_size=32", "trainer.lr=0.005")
    return metrics, out / "run"


def test_metrics_file_keys_and_ranges(cfc_run: tuple[dict, Path]) -> None:
    metrics, folder = cfc_run
    on_disk = json.loads((folder / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    for key in [
        "task",
        "model",
        "experiment",
        "seed",
        "metric",
        "test/accuracy",
        "val/accuracy",
        "n_params",
        "time/epoch_s",
        "time/train_s",
        "time/step_ms",
        "time/infer_ms_per_seq",
        "time/probe_ms",
        "time/probe_spread",
        "mem/peak_mb",
        "device",
        "device_name",
        "device_names",
        "torch",
        "threads",
        "allocator",
        "flush_denormal",
        "git_commit",
        "git_commits",
        "started_at",
    ]:
        assert key in on_disk, key
    assert (on_disk["task"], on_disk["model"], on_disk["metric"]) == ("xor", "cfc", "accuracy")
    assert 0.0 <= on_disk["test/accuracy"] <= 1.0
    assert on_disk["val/accuracy"] is None  # XOR has no validation split
    assert on_disk["select"] == "last" and on_disk["epochs"] == 30
    assert on_disk["n_params"] == 16 * 4 * 32 + 4 * 16 + (1 + 16) * 32 + 32 + 16 * 2 + 2
    assert 0 < on_disk["time/epoch_s"] <= on_disk["time/train_s"]
    assert on_disk["time/step_ms"] > 0 and on_disk["time/infer_ms_per_seq"] > 0
    assert on_disk["time/probe_ms"] > 0 and on_disk["time/probe_spread"] >= 1
    assert on_disk["mem/peak_mb"] > 50 and on_disk["threads"] >= 1
    assert on_disk["allocator"] in ("retained", "system")  # trainer.retain_freed_memory
    assert isinstance(on_disk["flush_denormal"], bool)  # trainer.flush_denormal
    assert on_disk["device"] == "cpu" and on_disk["torch"]
    assert (folder / "config.yaml").read_text() == "x: 1\n"
    assert not list(folder.glob(".*.tmp"))  # no temporary files left behind


def test_history_and_learning(cfc_run: tuple[dict, Path]) -> None:
    _, folder = cfc_run
    history = pd.read_csv(folder / "history.csv")
    assert history["epoch"].tolist() == list(range(1, 31))
    assert {"train_loss", "lr", "epoch_s", "step_ms"} <= set(history.columns)
    # The last five epochs' median: one epoch's loss (8 batches) jumps by a few hundredths
    # with rounding-level changes of the arithmetic.
    first, last = history["train_loss"].iloc[0], history["train_loss"].iloc[-5:].median()
    # Parity is hard: learning shows as a clear fall below the first epoch and below the
    # loss of guessing (ln 2), not as a solved task in 30 tiny epochs.
    assert last < 0.95 * first and last < math.log(2) - 0.02


def test_same_seed_repeats_exactly(tmp_path: Path) -> None:
    overrides = ["model=cfc", "model.hidden=8", "model.backbone_units=16", "trainer.epochs=3"]
    a = run(tmp_path, "a", *overrides, "seed=3")
    b = run(tmp_path, "b", *overrides, "seed=3")
    run(tmp_path, "c", *overrides, "seed=4")
    assert a["test/accuracy"] == b["test/accuracy"] and a["test_loss"] == b["test_loss"]
    losses = [pd.read_csv(tmp_path / n / "history.csv")["train_loss"].tolist() for n in "abc"]
    assert losses[0] == losses[1] and losses[0] != losses[2]


def test_lstm_trains_and_decay_multiplies_lr(tmp_path: Path) -> None:
    run(tmp_path, "lstm", "model=lstm", "model.hidden=8", "trainer.epochs=3", "trainer.decay=0.5")
    history = pd.read_csv(tmp_path / "lstm" / "history.csv")
    assert history["lr"].tolist() == pytest.approx([0.01, 0.005, 0.0025])


def small_walker(tmp_path: Path, mirror: Path, protocol: str, select: str) -> Any:
    """A 4-epoch Walker2d CfC whose learning rate grows, so that later epochs get worse."""
    return compose(
        [
            "task=walker",
            f"task.protocol={protocol}",
            "task.train_limit=128",
            f"data.mirror={mirror}",
            f"data.root={tmp_path / 'data'}",
            "model=cfc",
            "model.hidden=8",
            "model.backbone_units=16",
            "trainer.epochs=4",
            "trainer.lr=0.05",
            "trainer.decay=5",
            f"trainer.select={select}",
            "trainer.progress=false",
            "device=cpu",
        ]
    )


@pytest.mark.parametrize(
    "protocol,select,expected",
    [
        ("default", "best_val", "best_val"),
        ("default", "last", "last"),
        ("paper", "best_val", "last"),  # walker's paper protocol tests the last epoch
    ],
)
def test_weights_tested_follow_selection(
    tmp_path: Path, mirror: Path, protocol: str, select: str, expected: str
) -> None:
    metrics = train(small_walker(tmp_path, mirror, protocol, select), tmp_path / "run")
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert metrics["select"] == expected
    best = int(history["val_mse"].idxmin())
    assert metrics["best_epoch"] == best + 1
    assert best < len(history) - 1
    row = best if expected == "best_val" else len(history) - 1
    # the validation score recomputed after restoring the weights equals that epoch's
    assert metrics["val/mse"] == pytest.approx(history["val_mse"].iloc[row], rel=1e-6)


def test_a_run_testing_the_last_epoch_also_scores_the_best_validation_epoch(
    tmp_path: Path, mirror: Path
) -> None:
    def walker(select: str) -> dict:
        return train(small_walker(tmp_path, mirror, "default", select), tmp_path / select)

    last, best = walker("last"), walker("best_val")
    assert last["best_epoch"] == best["best_epoch"] < last["epochs"]
    assert last["test/mse"] != pytest.approx(best["test/mse"])
    # the same weights as the run that restores them: equal scores, not a re-selection
    assert last["test_at_best_val/mse"] == pytest.approx(best["test/mse"], rel=1e-6)
    assert best["test_at_best_val/mse"] is None  # already the tested score


def test_rmsprop_of_the_tensorflow_presets_takes_keras_first_step() -> None:
    tf_preset = compose(["experiment=xor_cfc"])
    # every RMSprop preset now follows a Keras script; torch's default is the schema's
    torch_preset = compose(["experiment=xor_cfc", "trainer.rmsprop_alpha=0.99"])
    assert compose(["experiment=xor_lstm"]).trainer.rmsprop_alpha == 0.9
    assert (tf_preset.trainer.rmsprop_alpha, torch_preset.trainer.rmsprop_alpha) == (0.9, 0.99)
    grad = torch.tensor([1.0, -2.0, 0.5])
    for cfg, alpha in ((tf_preset, 0.9), (torch_preset, 0.99)):
        weight = torch.nn.Parameter(torch.zeros(3))
        weight.grad = grad.clone()
        make_optimizer(cfg, [weight]).step()
        # From a zero state: mean square (1 − rho)·g², step lr·g / (sqrt(mean square) + eps).
        expected = -cfg.trainer.lr * grad / ((1 - alpha) * grad**2).sqrt()
        assert torch.allclose(weight.detach(), expected, rtol=1e-6)
    # Keras' first step is sqrt(10)× smaller than torch's default: 3.2·lr against 10·lr.
    assert math.isclose(-expected[0].item() / torch_preset.trainer.lr, 10.0, rel_tol=1e-5)


def test_test_outputs_recorded_recompute_the_metric(cfc_run: tuple[dict, Path]) -> None:
    """test_outputs.npz holds what a metric declared later needs: scoring it again gives the
    recorded test metric."""
    import numpy as np

    from cfc_bench.metrics import ACCURACY, AUC

    metrics, folder = cfc_run
    arrays = np.load(folder / "test_outputs.npz")
    out, y, mask = (torch.from_numpy(arrays[k]) for k in ("out", "y", "mask"))
    assert out.shape == (256, 2) and y.shape == (256,) and mask.shape[0] == 256
    assert ACCURACY.score(out, y, mask) == pytest.approx(metrics["test/accuracy"], abs=1e-12)
    assert 0.0 <= AUC.score(out, y, mask) <= 1.0
    assert metrics["extra_metrics"] == []


def test_run_leaves_no_lock_and_counts_in_the_singular(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = ["model=lstm", "model.hidden=8", "trainer.epochs=1", "trainer.threads=1"]
    with caplog.at_level(logging.INFO):
        run(tmp_path, "run", *overrides)
    assert ", 1 thread, " in caplog.text and "1 threads" not in caplog.text
    assert not (tmp_path / "run" / ".lock").exists()  # it exists while a process trains


def test_plural() -> None:
    assert [plural(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]
    assert plural(1, "CPU") == "1 CPU" and plural(3, "process", "processes") == "3 processes"
