"""The interface every task shares.

A task turns its config into a :class:`Task`: in-memory splits of ``(x, dt, mask, y)``
tensors, the :class:`SequenceIO` a model is built for, whether targets are per step,
and its metric. Loss and metric are defined here once, from those facts, so the trainer
needs no task-specific branches.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import MISSING
from sklearn.metrics import roc_auc_score

from cfc_bench.models.base import SequenceIO

IGNORE = -1  # per-step class label of unlabelled or padded steps


class Protocol(Enum):
    paper = "paper"  # reproduce the reference code, quirks included
    default = "default"  # the corrected protocol


class Select(Enum):
    best_val = "best_val"  # restore the weights of the best validation epoch before testing
    last = "last"  # test the last epoch's weights


class Metric(Enum):
    accuracy = "accuracy"
    auc = "auc"
    mse = "mse"

    @property
    def higher_is_better(self) -> bool:
        return self is not Metric.mse


@dataclass
class DataConfig:
    """Where raw files and preprocessed caches live (used by tasks that read files)."""

    root: str | None = None  # default: $CFC_BENCH_DATA or the per-user cache folder
    mirror: str | None = None  # a folder or URL laid out as <mirror>/<dataset>/<files>


@dataclass
class TaskConfig:
    """Base schema of ``conf/task/*.yaml``; each task module subclasses it."""

    name: str = MISSING
    protocol: Protocol = Protocol.default
    train_limit: int | None = None  # keep only the first N training sequences (reduced budget)

    def build(self, data: DataConfig) -> Task:
        raise NotImplementedError(f"{type(self).__name__} does not define build()")


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
    metric: Metric
    splits: dict[str, SequenceData]  # "train", "test" and optionally "val"
    select: Select | None = None  # a protocol's own choice of evaluated weights, else the trainer's
    notes: dict[str, str] = field(default_factory=dict)  # protocol facts recorded with results

    def loss(
        self, out: torch.Tensor, batch: SequenceData, class_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.metric is Metric.mse:
            err = (out - batch.y).pow(2).mean(dim=-1)
            valid = batch.mask.to(err.dtype)
            return (err * valid).sum() / valid.sum().clamp_min(1)
        logits = out.reshape(-1, out.shape[-1])
        if logits.shape[-1] == 1:  # one logit: binary cross-entropy, weighted as below
            y = batch.y.reshape(-1)
            labelled = y != IGNORE
            logit, y = logits[labelled, 0], y[labelled]
            w = class_weights[y] if class_weights is not None else torch.ones_like(logit)
            bce = F.binary_cross_entropy_with_logits(logit, y.to(logit.dtype), reduction="none")
            return (w * bce).sum() / w.sum()
        return F.cross_entropy(
            logits, batch.y.reshape(-1), weight=class_weights, ignore_index=IGNORE
        )

    def score(self, out: torch.Tensor, data: SequenceData) -> float:
        """The task's metric over a whole split, from the model outputs for all of it."""
        if self.metric is Metric.mse:
            valid = data.mask.to(out.dtype)
            err = (out - data.y).pow(2).mean(dim=-1)
            return float((err * valid).sum() / valid.sum().clamp_min(1))
        y = data.y.reshape(-1)
        logits = out.reshape(-1, out.shape[-1])[y != IGNORE]
        y = y[y != IGNORE]
        one_logit = logits.shape[-1] == 1  # P(class 1) = sigmoid(logit)
        if self.metric is Metric.accuracy:
            predicted = (logits[:, 0] > 0).long() if one_logit else logits.argmax(-1)
            return float((predicted == y).double().mean())
        if one_logit:
            probs = torch.sigmoid(logits[:, 0].double()).cpu().numpy()
        else:
            probs = torch.softmax(logits.double(), dim=-1)[:, 1].cpu().numpy()
        labels = y.cpu().numpy()
        if len(np.unique(labels)) < 2:
            return float("nan")  # ROC AUC is undefined with a single class present
        return float(roc_auc_score(labels, probs))

    def limit_train(self, limit: int | None) -> None:
        """Keep the first ``limit`` training sequences: a reduced budget, recorded in results."""
        if limit is not None and limit < len(self.splits["train"]):
            self.splits["train"] = self.splits["train"].take(slice(0, limit))
