"""The metric registry: one declaration per metric, used by tasks, the trainer and the tables.

A :class:`Metric` says how a split is scored (``score``), which training loss goes with it
(``loss``), which direction is better, and how it is shown (label, units, scale, digits).
A run records ``test/<name>`` and ``val/<name>`` for its task's metric and for each of the
task's extra metrics; the tables look a metric up here by the name ``metrics.json`` gives.

Outputs and targets: ``out`` is the model's output for a whole split, ``[N,O]`` (one per
sequence) or ``[N,T,O]`` (per step); ``y`` is ``[N]`` or ``[N,T]`` class labels (``IGNORE``
where unlabelled) or ``[N,T,O]`` regression targets; ``mask [N,T]`` marks real steps.
Classification with one output is binary with P(class 1) = sigmoid(logit); with two or more
outputs P(class 1) is the softmax's second entry.

A plugin task declares its own metric with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score

IGNORE = -1  # per-step class label of unlabelled or padded steps

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
Score = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float]


@dataclass(frozen=True)
class Metric:
    """One metric, declared once."""

    name: str  # the key in metrics.json (test/<name>, val/<name>) and in history.csv
    label: str  # what it is, for table headers and axes: "ROC AUC"
    higher_is_better: bool
    loss: Loss  # the training objective that goes with it: (out, y, mask, class weights)
    score: Score  # over a whole split: (out, y, mask) -> float
    units: str = ""  # of the shown value: "%" for accuracy
    scale: float = 1.0  # shown value = recorded value * scale
    digits: int = 4  # decimals of the shown value

    def better(self, candidate: float, best: float | None) -> bool:
        """Whether ``candidate`` improves on ``best`` (None: nothing yet)."""
        if best is None:
            return True
        return candidate > best if self.higher_is_better else candidate < best

    @property
    def header(self) -> str:
        """The label with its units, as tables and axes show it."""
        return f"{self.label} ({self.units})" if self.units else self.label


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add ``metric`` to the registry; a name may be declared once."""
    if metric.name in METRICS and METRICS[metric.name] != metric:
        raise ValueError(f"metric '{metric.name}' is declared twice")
    METRICS[metric.name] = metric
    return metric


def lookup(name: str) -> Metric:
    """The metric ``name``; a plugin task's metric is declared when its module is imported,
    so an unknown name first loads the installed task plugins."""
    if name not in METRICS:
        from cfc_bench.config import plugins

        plugins("task")
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(
            f"unknown metric '{name}': declared are {', '.join(sorted(METRICS))}"
        ) from None


# -- losses ----------------------------------------------------------------------------------
def cross_entropy(
    out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, class_weights: torch.Tensor | None
) -> torch.Tensor:
    """Class-weighted cross-entropy over labelled targets (binary with one output)."""
    logits = out.reshape(-1, out.shape[-1])
    labels = y.reshape(-1)
    if logits.shape[-1] == 1:
        labelled = labels != IGNORE
        logit, labels = logits[labelled, 0], labels[labelled]
        w = class_weights[labels] if class_weights is not None else torch.ones_like(logit)
        bce = F.binary_cross_entropy_with_logits(logit, labels.to(logit.dtype), reduction="none")
        return (w * bce).sum() / w.sum()
    return F.cross_entropy(logits, labels, weight=class_weights, ignore_index=IGNORE)


def squared_error(
    out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, class_weights: torch.Tensor | None
) -> torch.Tensor:
    """Mean over valid steps of the squared error averaged over output features."""
    err = (out - y).pow(2).mean(dim=-1)
    valid = mask.to(err.dtype)
    return (err * valid).sum() / valid.sum().clamp_min(1)


# -- scores ----------------------------------------------------------------------------------
def _labelled(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    labels = y.reshape(-1)
    logits = out.reshape(-1, out.shape[-1])
    keep = labels != IGNORE
    return logits[keep], labels[keep]


def _positive_probability(out: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = _labelled(out, y)
    if logits.shape[-1] == 1:
        probs = torch.sigmoid(logits[:, 0].double())
    else:
        probs = torch.softmax(logits.double(), dim=-1)[:, 1]
    return labels.cpu().numpy(), probs.cpu().numpy()


def accuracy(out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    logits, labels = _labelled(out, y)
    predicted = (logits[:, 0] > 0).long() if logits.shape[-1] == 1 else logits.argmax(-1)
    return float((predicted == labels).double().mean())


def _binary(rank_score: Callable[[np.ndarray, np.ndarray], float]) -> Score:
    def score(out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
        labels, probs = _positive_probability(out, y)
        if len(np.unique(labels)) < 2:
            return float("nan")  # undefined with a single class present
        return float(rank_score(labels, probs))

    return score


def mean_squared_error(out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    return float(squared_error(out, y, mask, None))


ACCURACY = register(
    Metric("accuracy", "accuracy", True, cross_entropy, accuracy, units="%", scale=100.0, digits=2)
)
AUC = register(Metric("auc", "ROC AUC", True, cross_entropy, _binary(roc_auc_score)))
AUPRC = register(Metric("auprc", "AUPRC", True, cross_entropy, _binary(average_precision_score)))
MSE = register(Metric("mse", "MSE", False, squared_error, mean_squared_error))
