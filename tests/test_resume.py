"""Runs stopped at any moment resume to the same result; finished runs are not redone."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO
from runs import SLOW_EPOCHS, TIMEOUT, cli, read_json, start, wait_into_epoch

from cfc_bench.config import compose
from cfc_bench.errors import OutputConflict
from cfc_bench.run import folder, provenance
from cfc_bench.run.folder import config_changes, exclusive
from cfc_bench.run.job import train

LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]\[[\w.]+\]\[[A-Z]+\] - ")


def checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference = start("train", *SLOW_EPOCHS, f"hydra.run.dir={reference_dir}", cwd=tmp_path)
    victim = start("train", *SLOW_EPOCHS, f"hydra.run.dir={killed_dir}", cwd=tmp_path)
    wait_into_epoch(victim, killed_dir, done=2)
    victim.kill()
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    # Killed inside epoch 3: epochs 1-2 are on disk, epoch 3 is not.
    assert len(pd.read_csv(killed_dir / "history.csv")) == 2
    before = checkpoint(killed_dir)
    assert before["state"]["epoch"] == 2
    assert not (killed_dir / "metrics.json").exists()

    resumed = cli("train", *SLOW_EPOCHS, f"hydra.run.dir={killed_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {killed_dir / 'checkpoint.pt'} after epoch 2" in resumed.stdout
    out, err = reference.communicate(timeout=TIMEOUT)
    assert reference.returncode == 0, err[-3000:]

    expected, got = (
        read_json(reference_dir / "metrics.json"),
        read_json(killed_dir / "metrics.json"),
    )
    assert got["test/accuracy"] == expected["test/accuracy"]
    assert got["test_loss"] == expected["test_loss"]
    history, expected_history = (
        pd.read_csv(d / "history.csv") for d in (killed_dir, reference_dir)
    )
    assert history["epoch"].tolist() == [1, 2, 3, 4]  # every epoch once
    for column in ("train_loss", "lr"):
        assert history[column].tolist() == expected_history[column].tolist()
    weights, expected_weights = checkpoint(killed_dir)["model"], checkpoint(reference_dir)["model"]
    assert all(torch.equal(weights[k], expected_weights[k]) for k in expected_weights)
    # Timing state carried over: epochs 1-2 timed by the killed process, 3-4 by the resumed one.
    assert history["epoch_s"].iloc[:2].tolist() == before["state"]["epoch_s"]
    assert got["time/train_s"] == pytest.approx(history["epoch_s"].sum())
    assert (got["resumes"], expected["resumes"]) == (1, 0)
    assert got["started_at"] == before["state"]["started_at"]
    assert got["epochs"] == 4

    # The log file in the run folder holds the lines printed on the console.
    console = [line for line in out.splitlines() if LOG_LINE.match(line)]
    assert console == (reference_dir / "train.log").read_text().splitlines()
    assert len(console) == 6  # start, 4 epochs, test


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_checkpoint_and_exits_with_resume_hint(
    tmp_path: Path, signum: signal.Signals
) -> None:
    run_dir = tmp_path / "run"
    proc = start("train", *SLOW_EPOCHS, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    wait_into_epoch(proc, run_dir, done=1)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 128 + signum
    message = (
        f"{signal.Signals(signum).name} received during epoch 2 of 4: stopped; the checkpoint "
        f"of epoch 1 is kept in {run_dir}. To resume, run the same command again with "
        f"hydra.run.dir={run_dir}"
    )
    assert message in out
    assert message in (run_dir / "train.log").read_text()
    assert "Traceback" not in err
    assert checkpoint(run_dir)["state"]["epoch"] == 1
    assert len(pd.read_csv(run_dir / "history.csv")) == 1
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "failed.json").exists()
    assert not list(run_dir.glob(".*.tmp"))  # no half-written file left behind


SMALL = ["task=xor", "task.train_samples=128", "task.test_samples=64", "trainer.epochs=2"]
SMALL += ["model.hidden=8", "trainer.progress=false", "device=cpu"]
CONFIG = "trainer:\n  lr: 0.001\n  threads: null\nlogger:\n  kind: none\n"


def test_skip_done_returns_recorded_metrics_and_false_trains_again(tmp_path: Path) -> None:
    cfg, run_dir = compose(SMALL), tmp_path / "run"
    first = train(cfg, run_dir, config_yaml=CONFIG)
    stamp = (run_dir / "metrics.json").stat().st_mtime_ns
    assert train(cfg, run_dir, config_yaml=CONFIG) == read_json(run_dir / "metrics.json")
    assert (run_dir / "metrics.json").stat().st_mtime_ns == stamp  # returned at once

    cfg.trainer.skip_done = False
    again = train(cfg, run_dir, config_yaml=CONFIG)
    assert (run_dir / "metrics.json").stat().st_mtime_ns != stamp
    assert again["resumes"] == 0  # trained from scratch, not resumed from the old checkpoint
    assert again["test_loss"] == first["test_loss"]
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [1, 2]


def test_folder_of_another_configuration_is_left_alone(tmp_path: Path) -> None:
    cfg, run_dir = compose(SMALL), tmp_path / "run"
    train(cfg, run_dir, config_yaml=CONFIG)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    other = CONFIG.replace("lr: 0.001", "lr: 0.01")
    with pytest.raises(
        OutputConflict, match=r"another configuration \(trainer.lr: 0.001 -> 0.01\)"
    ):
        train(cfg, run_dir, config_yaml=other)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    # Settings that do not change results (threads, logging) may differ.
    runtime_only = CONFIG.replace("threads: null", "threads: 4").replace("none", "wandb")
    assert train(cfg, run_dir, config_yaml=runtime_only) == read_json(run_dir / "metrics.json")


def test_folder_in_use_by_another_process_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with exclusive(run_dir):  # as a run of another process would hold it
        with pytest.raises(OutputConflict, match=f"is in use by pid {os.getpid()} on "):
            train(compose(SMALL), run_dir, config_yaml=CONFIG)
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing else touched
    assert not list(run_dir.iterdir())  # the lock file goes with its holder
    with exclusive(run_dir):  # released when its holder is done
        pass


def test_lock_on_a_file_removed_by_its_last_holder_is_taken_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that opened .lock just before its holder ended (and removed it) must lock the
    file now at that path, or two processes would train the folder side by side."""
    run_dir, opened = tmp_path / "run", []
    run_dir.mkdir()

    def open_then_holder_ends(path: Path, mode: str):  # type: ignore[no-untyped-def]
        handle = open(path, mode)
        if not opened:
            path.unlink()  # the holder removes the file between this open and the flock
        opened.append(handle)
        return handle

    monkeypatch.setattr(folder, "open", open_then_holder_ends, raising=False)
    with exclusive(run_dir):
        assert len(opened) == 2  # tried again
        assert os.stat(run_dir / ".lock").st_ino == os.fstat(opened[1].fileno()).st_ino
        with pytest.raises(OutputConflict, match="is in use by pid"):
            with exclusive(run_dir):
                pass
    assert not (run_dir / ".lock").exists()


def test_config_changes_lists_result_settings_only() -> None:
    old = "model:\n  hidden: 8\ntrainer:\n  lr: 0.1\n  threads: 1\ndevice: cpu\ndata:\n  root: /a\n"
    new = "model:\n  hidden: 16\n  extra: 1\ntrainer:\n  lr: 0.1\n  threads: 2\ndevice: cuda\n"
    assert config_changes(old, new) == ["model.extra: (absent) -> 1", "model.hidden: 8 -> 16"]
    assert config_changes(old, old) == []


def test_a_setting_added_since_a_run_counts_as_its_default() -> None:
    """A run made before ``model.extra`` existed resumes under its default, not another value."""
    old = "model:\n  hidden: 8\n"
    new = "model:\n  hidden: 8\n  extra: 1\n"
    assert config_changes(old, new, {"model.extra": 1}) == []
    assert config_changes(old, new, {"model.extra": 2}) == ["model.extra: 2 -> 1"]


def changes_on_restart(run: str) -> tuple[list[str], list[str]]:
    """A committed run started again with the overrides it recorded (``.hydra/overrides.yaml``):
    the settings that differ from its config.yaml, without and with schema defaults."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import OmegaConf

    from cfc_bench.config import register_configs, run_config, schema_defaults

    register_configs()
    folder = REPO / "results" / "runs" / run
    recorded = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
    with initialize_config_module("cfc_bench.conf", version_base="1.3"):
        cfg = hydra_compose("config", overrides=[o for o in recorded if "hydra" not in o])
    defaults = schema_defaults(OmegaConf.structured(run_config(cfg)))
    now = OmegaConf.to_yaml(cfg, resolve=True)
    old = (folder / "config.yaml").read_text()
    return config_changes(old, now), config_changes(old, now, defaults)


@pytest.mark.parametrize("run", ["xor/ode_lstm/seed0", "walker/lstm/seed1", "physionet/cfc/seed2"])
def test_committed_runs_still_match_their_presets(run: str) -> None:
    """Committed runs of presets unchanged since are the same runs: the settings added since
    then (model.script, model.head_activation, task.readout, ...) stand at their defaults, so
    the runs are skipped as done rather than refused."""
    plain, with_defaults = changes_on_restart(run)
    assert plain != []  # keys were added since
    assert with_defaults == []


def test_committed_runs_of_a_changed_preset_are_refused() -> None:
    """A preset changed since its runs (here its weight decay became Keras' L2 kernel
    penalty) does not count them as done: a new round needs their folders moved first (these
    were, to results/runs/before_reference_cells/)."""
    assert changes_on_restart("before_reference_cells/xor/cfc/seed0")[1] == [
        "trainer.l2_kernel: 0.0 -> 3e-06",
        "trainer.weight_decay: 3e-06 -> 0.0",
    ]


def test_metrics_name_the_code_of_every_piece_of_a_resumed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run trained in pieces (a session each) records the commit of each piece's code and
    the machine of each piece (a session may draw another CPU), once per change."""
    cfg, run_dir = compose(SMALL), tmp_path / "run"
    versions = iter(["aaa", "bbb-dirty", "bbb-dirty"])
    machines = iter(["cpu-A", "cpu-B", "cpu-B"])
    monkeypatch.setattr(provenance, "code_version", lambda: next(versions))
    monkeypatch.setattr(provenance, "device_name", lambda device: next(machines))
    train(cfg, run_dir, config_yaml=CONFIG)  # 2 epochs under "aaa" on cpu-A
    for epochs in (3, 4):  # two more pieces, both under "bbb-dirty" on cpu-B
        (run_dir / "metrics.json").unlink()  # as if stopped after its last epoch
        cfg.trainer.epochs = epochs
        resumed = train(cfg, run_dir, config_yaml=CONFIG)
    assert resumed["resumes"] == 2 and resumed["epochs"] == 4
    assert resumed["git_commit"] == "aaa" and resumed["git_commits"] == ["aaa", "bbb-dirty"]
    assert resumed["device_names"] == ["cpu-A", "cpu-B"]


def test_epochs_of_a_checkpoint_without_code_versions_name_no_commit_nor_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint written before versions were recorded: its epochs' code is unknown (None),
    not the code of the resumed piece."""
    cfg, run_dir = compose(SMALL), tmp_path / "run"
    monkeypatch.setattr(provenance, "code_version", lambda: "bbb")
    train(cfg, run_dir, config_yaml=CONFIG)
    (run_dir / "metrics.json").unlink()
    payload = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    del payload["state"]["code_versions"], payload["state"]["device_names"]
    torch.save(payload, run_dir / "checkpoint.pt")
    cfg.trainer.epochs = 3
    resumed = train(cfg, run_dir, config_yaml=CONFIG)
    assert resumed["git_commit"] is None and resumed["git_commits"] == [None, "bbb"]
    assert resumed["device_names"] == [None, resumed["device_name"]]


def test_code_version_is_this_checkout_and_flags_uncommitted_code() -> None:
    version = provenance.code_version()
    repo = Path(provenance.__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        assert version is None  # an installed package names no commit
        return
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    status = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--", *provenance.CODE_PATHS],
        capture_output=True,
        text=True,
    ).stdout
    assert version == (f"{head}-dirty" if status.strip() else head)
