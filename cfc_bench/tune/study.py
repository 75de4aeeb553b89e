"""The Optuna study of a search: who runs each trial, trials a killed process left behind,
and the budget.

Trials. Hydra's Optuna sweeper asks the study for a trial, launches the job and tells the
study its return value: a number completes the trial; None (a failed job: a non-finite loss,
out of memory, anything recorded in its failed.json) or NaN fails it, and the search goes on.

Owners. Each trial records the host and process id of the sweeper that asked for it
(:func:`claim`, the sweeper's ``custom_search_space`` hook). A trial still RUNNING whose
process no longer exists on this host was killed (SIGKILL, a lost machine): :func:`recover`
records it as failed with ``interrupted`` set and queues its parameters, which the next trial
asked for takes, so it is trained again (in the same folder: it resumes from its last
checkpoint). Trials of live processes, or of other hosts, are left alone.

Budget. A search of N trials counts every trial but the interrupted ones; the best trial is
the best completed one among the first N counted (by trial number), so that processes adding
trials at once, which may run past N, leave every model the same budget.
"""

from __future__ import annotations

import math
import os
import socket
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

OWNER, INTERRUPTED = "owner", "interrupted"


def claim(config: DictConfig, trial: optuna.trial.Trial) -> None:
    """Record this process as the trial's owner (the sweeper's ``custom_search_space``)."""
    trial.set_user_attr(OWNER, {"host": socket.gethostname(), "pid": os.getpid()})


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def orphaned(trial: FrozenTrial) -> bool:
    """A RUNNING trial whose owner was a process on this host that has ended."""
    owner = trial.user_attrs.get(OWNER)
    return (
        trial.state is TrialState.RUNNING
        and isinstance(owner, dict)
        and owner.get("host") == socket.gethostname()
        and not alive(int(owner.get("pid", 0)))
    )


def load(storage: str, name: str) -> optuna.Study | None:
    """The study, or None when the storage holds none of that name (yet)."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def recover(storage: str, name: str) -> list[int]:
    """Fail the orphaned trials (``interrupted``) and queue their parameters again; the
    numbers of the trials so recovered."""
    study = load(storage, name) if _exists(storage) else None
    if study is None:
        return []
    rdb = optuna.storages.get_storage(storage)
    study_id = rdb.get_study_id_from_name(name)
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not orphaned(trial):
            continue
        try:
            trial_id = rdb.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            rdb.set_trial_user_attr(trial_id, INTERRUPTED, True)
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # another process recovered it first
            continue
        with warnings.catch_warnings():  # enqueue_trial is "experimental" in optuna 2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.enqueue_trial(trial.params)
        recovered.append(trial.number)
    return recovered


@dataclass
class Progress:
    """Where a search of ``budget`` trials stands."""

    budget: int
    counted: list[FrozenTrial]  # every trial but the interrupted ones, by number
    interrupted: int
    maximize: bool

    @property
    def within(self) -> list[FrozenTrial]:
        """The trials the budget covers: the first ``budget`` counted."""
        return self.counted[: self.budget]

    @property
    def remaining(self) -> int:
        """Trials still to ask for (trials running elsewhere count as asked)."""
        return max(0, self.budget - len(self.counted))

    @property
    def finished(self) -> bool:
        return len(self.within) == self.budget and all(t.state.is_finished() for t in self.within)

    @property
    def failed(self) -> int:
        return sum(t.state is TrialState.FAIL for t in self.within)

    def best(self) -> FrozenTrial | None:
        done = [
            t
            for t in self.within
            if t.state is TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
        ]
        if not done:
            return None
        key: Any = (lambda t: t.value) if self.maximize else (lambda t: -t.value)
        return max(done, key=key)


def progress(storage: str, name: str, budget: int, maximize: bool) -> Progress:
    study = load(storage, name) if _exists(storage) else None
    trials = study.get_trials(deepcopy=False) if study is not None else []
    asked = [t for t in trials if t.state is not TrialState.WAITING]
    counted = sorted((t for t in asked if not t.user_attrs.get(INTERRUPTED)), key=number)
    interrupted = sum(bool(t.user_attrs.get(INTERRUPTED)) for t in trials)
    return Progress(budget, counted, interrupted, maximize)


def number(trial: FrozenTrial) -> int:
    return trial.number


def _exists(storage: str) -> bool:
    """Whether an SQLite storage's file exists (loading would create an empty one)."""
    return not storage.startswith("sqlite:///") or os.path.exists(storage[len("sqlite:///") :])
