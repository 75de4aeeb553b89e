"""Checkpoint state: what a run stopped after an epoch needs to continue as if never stopped.

A checkpoint holds the model, optimizer and scheduler states, every random generator's state
(torch, CUDA, numpy, Python and the shuffling generator), the run's :class:`State` (history,
timings, best weights, provenance) and the config it was trained with. It is written
atomically, so a run killed at any moment finds either the previous epoch's checkpoint or the
new one, and a resumed run ends with the same numbers as one that was never stopped (on the
same device and thread count).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cfc_bench.io import atomic_write

log = logging.getLogger(__name__)


@dataclass
class State:
    """Everything a resumed run needs besides model and optimizer."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_s: list[float] = field(default_factory=list)
    step_s: list[list[float]] = field(default_factory=list)  # per epoch
    best_val: float | None = None
    best_epoch: int | None = None
    best_weights: dict[str, torch.Tensor] | None = None
    started_at: str | None = None  # when the run first started (UTC)
    resumes: int = 0  # how often the run was resumed from a checkpoint
    logger_id: str | None = None  # the wandb run a resumed job continues
    # code_version() at the first start and at every resume that ran other code
    code_versions: list[str | None] = field(default_factory=list)
    # the readings of probe.probe() at every start and after the last epoch: machine speed
    probe_ms: list[float] = field(default_factory=list)
    # device_name() at the first start and at every resume on another machine (None: a
    # checkpoint that recorded none): a run in pieces may span machines of unlike speed
    device_names: list[str | None] = field(default_factory=list)


def rng_state(shuffle: torch.Generator) -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "shuffle": shuffle.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    shuffle.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Training:
    """The live objects a checkpoint saves and restores."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    shuffle: torch.Generator  # the generator of the training split's order


def save(path: Path, training: Training, state: State, config_yaml: str) -> None:
    payload = {
        "model": training.model.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "scheduler": training.scheduler.state_dict(),
        "state": state.__dict__,
        "rng": rng_state(training.shuffle),
        "config": config_yaml,
    }
    atomic_write(path, lambda f: torch.save(payload, f))


def load(path: Path, training: Training, device: torch.device) -> State:
    """Restore ``training`` and the random generators from ``path``; the run's state, with one
    more resume counted."""
    payload = torch.load(path, map_location=device, weights_only=False)
    training.model.load_state_dict(payload["model"])
    training.optimizer.load_state_dict(payload["optimizer"])
    training.scheduler.load_state_dict(payload["scheduler"])
    state = State(**payload["state"])
    state.resumes += 1
    set_rng_state(payload["rng"], training.shuffle)
    log.info("resumed from %s after epoch %d", path, state.epoch)
    return state
