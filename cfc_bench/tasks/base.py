"""The interface every task shares.

A task turns its config into a :class:`Task`: in-memory splits of ``(x, dt, mask, y)``
tensors, the :class:`SequenceIO` a model is built for, whether targets are per step,
and its metrics (declared once in :mod:`cfc_bench.metrics`, with their losses), so the
trainer needs no task-specific branches.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import ClassVar

import torch
from omegaconf import MISSING

from cfc_bench.data.config import DataConfig
from cfc_bench.metrics import Metric
from cfc_bench.models.base import SequenceIO
from cfc_bench.ranges import ranged


class Protocol(Enum):
    paper = "paper"  # reproduce the reference code, quirks included
    default = "default"  # the corrected protocol


class Select(Enum):
    best_val = "best_val"  # restore the weights of the best validation epoch before testing
    last = "last"  # test the last epoch's weights


@dataclass
class TaskConfig:
    """Base schema of ``conf/task/*.yaml``; each task module subclasses it."""

    name: str = MISSING
    protocol: Protocol = Protocol.default
    # keep only the first N training sequences (reduced budget)
    train_limit: int | None = ranged(None, ge=1)
    # recorded beside the task's metric (its Task's extra_metrics); the tables show a column each
    extra_metrics: ClassVar[tuple[Metric, ...]] = ()
    # the metric models are compared and selected on, known before any data loads (a search
    # on validation needs its direction); None: declared by the built Task only
    metric: ClassVar[Metric | None] = None

    def build(self, data: DataConfig) -> Task:
        raise NotImplementedError(f"{type(self).__name__} does not define build()")

    def has_validation(self) -> bool:
        """Whether :meth:`build` makes a ``val`` split under these settings, known before any
        data loads: a hyperparameter search needs one (cfc_bench.tune)."""
        return False


@dataclass
class SequenceData:
    """One split: inputs ``x [N,T,I]``, elapsed ``dt [N,T]``, ``mask [N,T]`` and targets ``y``.

    ``y`` is ``[N]`` class labels, ``[N,T]`` per-step labels (``IGNORE`` where unlabelled)
    or ``[N,T,O]`` per-step regression targets.
    """

    x: torch.Tensor
    dt: torch.Tensor
    mask: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        n, steps = self.x.shape[:2]
        for name in ("dt", "mask", "y"):
            t = getattr(self, name)
            if t.shape[0] != n or (name != "y" and tuple(t.shape) != (n, steps)):
                raise ValueError(f"{name} has shape {tuple(t.shape)}; expected ({n}, {steps}, ...)")

    def __len__(self) -> int:
        return self.x.shape[0]

    def take(self, index: torch.Tensor | slice) -> SequenceData:
        return SequenceData(*(getattr(self, f.name)[index] for f in fields(self)))

    def to(self, device: torch.device | str) -> SequenceData:
        return SequenceData(*(getattr(self, f.name).to(device) for f in fields(self)))


@dataclass
class Task:
    name: str
    io: SequenceIO
    per_step: bool  # targets at every step (True) or at the last valid step (False)
    metric: Metric  # the one models are compared and selected on
    splits: dict[str, SequenceData]  # "train", "test" and optionally "val"
    select: Select | None = None  # a protocol's own choice of evaluated weights, else the trainer's
    notes: dict[str, str] = field(default_factory=dict)  # protocol facts recorded with results
    extra_metrics: tuple[Metric, ...] = ()  # recorded beside the metric (PhysioNet: AUPRC)

    def loss(
        self, out: torch.Tensor, batch: SequenceData, class_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The training loss of the task's metric (:mod:`cfc_bench.metrics`)."""
        return self.metric.loss(out, batch.y, batch.mask, class_weights)

    def scores(self, out: torch.Tensor, data: SequenceData) -> dict[str, float]:
        """Every recorded metric over a whole split, from the model outputs for all of it."""
        return {m.name: m.score(out, data.y, data.mask) for m in self.recorded_metrics}

    def score(self, out: torch.Tensor, data: SequenceData) -> float:
        """The task's metric over a whole split."""
        return self.metric.score(out, data.y, data.mask)

    @property
    def recorded_metrics(self) -> tuple[Metric, ...]:
        return (self.metric, *self.extra_metrics)

    def limit_train(self, limit: int | None) -> None:
        """Keep the first ``limit`` training sequences: a reduced budget, recorded in results."""
        if limit is not None and limit < len(self.splits["train"]):
            self.splits["train"] = self.splits["train"].take(slice(0, limit))
