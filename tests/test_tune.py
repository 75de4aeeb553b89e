"""Searches on validation data (`cfc-bench tune`, Hydra's Optuna sweeper): the refusal without
a validation split, failed and killed trials, the budget, the preset and its table label."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from optuna.trial import TrialState
from runs import TIMEOUT, command, environment

from cfc_bench import cli
from cfc_bench.config import compose
from cfc_bench.errors import ConfigError, TrainingError
from cfc_bench.report.presets import Budget, tuned_label
from cfc_bench.tune import study as tune_study
from cfc_bench.tune.cli import compose_search, main, search_overrides
from cfc_bench.tune.guard import check_search

optuna.logging.set_verbosity(optuna.logging.WARNING)

# A search of a few seconds per trial: a reduced XOR with a validation split.
TINY_XOR = [
    "task.train_samples=128",
    "task.val_samples=64",
    "task.test_samples=64",
    "task.max_bits=4",
    "trainer.epochs=1",
    "trainer.threads=1",
    "model.hidden=8",
    "model.backbone_units=16",
    "model.backbone_layers=1",
    "device=cpu",
]


def tune(tmp_path: Path, *args: str, trials: int = 2) -> subprocess.CompletedProcess:
    argv = ["tune", "--task", "xor", "--models", "cfc", "--trials", str(trials)]
    argv += ["--seeds", "0", "--out", str(tmp_path / "tune"), *args]
    return subprocess.run(
        command(*argv, *TINY_XOR),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment(tmp_path),
    )


def trials_of(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{tmp_path / 'tune' / 'xor' / 'cfc' / 'study.db'}"
    return optuna.load_study(study_name="xor_cfc", storage=storage).get_trials()


def test_search_without_validation_split_is_refused(capsys: pytest.CaptureFixture) -> None:
    # xor has no validation split unless task.val_samples is set: nothing is searched
    assert main(["--task", "xor", "--models", "cfc", "--trials", "2"]) == 2
    err = capsys.readouterr().err
    assert "cfc-bench tune: error: task xor has no validation split" in err
    assert "test split" in err and "Traceback" not in err
    config = compose_search(
        ["task=physionet", "task.protocol=paper", *search_overrides("physionet", "cfc")]
    )
    with pytest.raises(ConfigError, match="task.protocol=paper"):
        check_search(config)


def test_sweep_without_validation_split_stops_before_data(tmp_path: Path) -> None:
    # the Hydra callback refuses the Optuna sweeper on a task without validation data
    result = subprocess.run(
        command(
            "train", "-m", "task=physionet", "task.protocol=paper", "hydra/sweeper=search",
            "+search/model=lstm", "model=lstm", "hydra.sweeper.direction=maximize",
            f"hydra.sweep.dir={tmp_path / 'sweep'}", f"data.root={tmp_path / 'nothing'}",
        ),
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, env=environment(tmp_path),
    )  # fmt: skip
    assert result.returncode != 0
    assert "task physionet has no validation split" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "nothing").exists()


def test_direction_follows_the_metric() -> None:
    space = search_overrides("xor", "lstm")
    base = ["task=xor", "model=lstm", "task.val_samples=8"]
    assert check_search(compose_search([*base, *space, "hydra.sweeper.direction=maximize"]))
    with pytest.raises(ConfigError, match="set hydra.sweeper.direction=maximize"):
        check_search(compose_search([*base, *space, "hydra.sweeper.direction=minimize"]))


def test_model_without_search_space_is_refused(capsys: pytest.CaptureFixture) -> None:
    assert main(["--task", "xor", "--models", "cfc,ltc", "--trials", "2"]) == 2
    assert (
        "model ltc has no search space: add conf/search/model/ltc.yaml" in capsys.readouterr().err
    )


def test_failed_trial_is_recorded_and_the_search_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real sweeper, in this process: the first job's loss is non-finite, the
    second returns its validation score (never its test score)."""
    calls = []

    def fake_train(cfg, out_dir, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(out_dir)
        if len(calls) == 1:
            raise TrainingError("non-finite training loss (nan)", 1, 1)
        return {"metric": "accuracy", "val/accuracy": 0.75, "test/accuracy": 0.25}

    monkeypatch.setattr("cfc_bench.run.app.train", fake_train)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    sweep = tmp_path / "sweep"
    args = [
        "train", "-m", "task=xor", "model=lstm", "task.val_samples=8", "hydra/sweeper=search",
        "+search/model=lstm", "hydra.sweeper.direction=maximize", "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}",
    ]  # fmt: skip
    try:
        with pytest.raises(SystemExit):  # the sweep summary: jobs without metrics
            cli.main(args)
    finally:
        GlobalHydra.instance().clear()
    trials = optuna.load_study(study_name="xor_lstm", storage=f"sqlite:///{sweep}/study.db")
    states = [t.state for t in trials.get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials.best_value == 0.75 and len(calls) == 2


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_trial_of_a_killed_process_runs_again(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    done = study.ask({"x": optuna.distributions.UniformDistribution(0, 1)})
    study.tell(done, 0.5)
    killed = study.ask({"x": optuna.distributions.UniformDistribution(0, 1)})
    killed.set_user_attr(tune_study.OWNER, {"host": os.uname().nodename, "pid": dead_pid()})
    live = study.ask({"x": optuna.distributions.UniformDistribution(0, 1)})
    tune_study.claim(OmegaConf.create(), live)  # this process: alive

    assert tune_study.recover(storage, "s") == [killed.number]
    study = optuna.load_study(study_name="s", storage=storage)  # not this process's cache
    trials = study.get_trials()
    assert [t.state for t in trials] == [
        TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING
    ]  # fmt: skip
    assert trials[1].user_attrs[tune_study.INTERRUPTED] is True
    again = study.ask({"x": optuna.distributions.UniformDistribution(0, 1)})
    assert again.params == killed.params
    # the interrupted trial does not count against the budget
    status = tune_study.progress(storage, "s", budget=3, maximize=True)
    assert [t.number for t in status.counted] == [0, 2, 3] and status.interrupted == 1
    assert status.remaining == 0 and not status.finished
    assert tune_study.recover(storage, "s") == []  # nothing else is orphaned


def test_best_trial_within_the_budget(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="minimize")
    for value in (0.3, None, 0.2, 0.1):  # the last one lies beyond a budget of 3
        trial = study.ask()
        if value is None:
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, value)
    status = tune_study.progress(storage, "s", budget=3, maximize=False)
    assert status.finished and status.failed == 1 and status.remaining == 0
    assert status.best().number == 2
    assert tune_study.progress(storage, "s", budget=5, maximize=False).remaining == 1


def test_tiny_search_writes_a_preset_that_composes(tmp_path: Path) -> None:
    result = tune(tmp_path, "--search-only")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = trials_of(tmp_path)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    best = max(trials, key=lambda t: t.value)
    run_cfg = compose(
        ["experiment=tuned/xor_cfc", f"hydra.searchpath=[file://{tmp_path / 'tune' / 'conf'}]"]
    )
    assert run_cfg.tuning.trials == 2 and run_cfg.tuning.trial == best.number
    assert run_cfg.tuning.val == pytest.approx(best.value)
    assert run_cfg.trainer.lr == best.params["trainer.lr"]
    assert run_cfg.model.backbone_dropout == best.params["model.backbone_dropout"]
    assert run_cfg.task.protocol.value == "default" and not run_cfg.paper_preset
    # settings fixed on the command line are not recorded as searched
    assert "model.hidden" not in run_cfg.tuning.space and "trainer.lr" in run_cfg.tuning.space
    assert not (tmp_path / "tune" / "runs").exists()


@pytest.mark.slow
def test_tune_retrains_resumes_and_never_overwrites_a_preset(tmp_path: Path) -> None:
    result = tune(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    seed0 = tmp_path / "tune" / "runs" / "xor" / "cfc" / "seed0" / "metrics.json"
    assert seed0.exists() and "tuned, test accuracy" in result.stdout
    # the same command again: nothing is trained again
    preset = tmp_path / "tune" / "conf" / "experiment" / "tuned" / "xor_cfc.yaml"
    text = preset.read_text()
    again = tune(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(trials_of(tmp_path)) == 2 and preset.read_text() == text
    # a larger budget continues the study but never overwrites the preset
    more = tune(tmp_path, "--search-only", trials=3)
    assert more.returncode == 2 and "is never overwritten" in more.stderr
    assert len(trials_of(tmp_path)) == 3 and preset.read_text() == text


def test_tuned_runs_are_labelled_in_the_tables() -> None:
    plain = Budget("as preset (57 epochs)", True, False)
    run = {"config": OmegaConf.create({"tuning": {"trials": 24}})}
    assert tuned_label(run, plain, None) == "tuned (24 trials on validation)"
    changed = Budget("REDUCED: 1/57 epochs", False, False)
    assert tuned_label(run, changed, OmegaConf.create()) == (
        "tuned (24 trials on validation); REDUCED: 1/57 epochs"
    )
    assert tuned_label({"config": None}, plain, None) == "as preset (57 epochs)"


@pytest.mark.slow
def test_search_killed_with_sigkill_continues(tmp_path: Path) -> None:
    slow = ["task.train_samples=2048", "trainer.batch_size=16", "trainer.epochs=3"]
    argv = ["tune", "--task", "xor", "--models", "cfc", "--trials", "2", "--search-only"]
    argv += ["--out", str(tmp_path / "tune"), *TINY_XOR, *slow]
    process = subprocess.Popen(
        command(*argv),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment(tmp_path),
        start_new_session=True,
    )
    database = tmp_path / "tune" / "xor" / "cfc" / "study.db"
    deadline = time.monotonic() + TIMEOUT
    running: list[optuna.trial.FrozenTrial] = []
    while not running and time.monotonic() < deadline and process.poll() is None:
        time.sleep(1)
        if database.exists():
            try:
                running = [t for t in trials_of(tmp_path) if t.state is TrialState.RUNNING]
            except KeyError:  # the study is being created
                continue
    assert running, "the search never started a trial"
    time.sleep(2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed = running[0]

    result = subprocess.run(
        command(*argv), cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
        env=environment(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    trials = trials_of(tmp_path)
    interrupted = [t for t in trials if t.user_attrs.get(tune_study.INTERRUPTED)]
    assert [t.number for t in interrupted] == [killed.number]
    assert interrupted[0].state is TrialState.FAIL
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    assert len(complete) == 2  # the budget, the interrupted trial not counted
    assert killed.params in [t.params for t in complete]  # run again with its parameters
