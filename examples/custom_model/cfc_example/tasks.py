"""Noisy sine, irregularly sampled: predict the next observation at every step.

Each sequence is ``sin(w * t + p) + noise`` observed at ``steps`` times whose gaps are drawn
from an exponential distribution (mean ``mean_gap``); ``w`` and ``p`` are drawn per
sequence. Input at step ``k``: the value observed at ``t_k``; elapsed time ``t_k - t_{k-1}``;
target: the noiseless value at ``t_{k+1}``. Metric: MSE over all steps. Train, validation
and test splits are drawn from fixed seeds, so every run sees the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cfc_bench.tasks import MSE, DataConfig, SequenceData, SequenceIO, Task, TaskConfig


@dataclass
class NoisySineConfig(TaskConfig):
    train_samples: int = 2_000
    test_samples: int = 500
    steps: int = 32
    mean_gap: float = 0.3
    noise: float = 0.05

    def build(self, data: DataConfig) -> Task:
        splits = {
            split: self.draw(n, seed)
            for split, n, seed in (
                ("train", self.train_samples, 0),
                ("val", self.test_samples, 1),
                ("test", self.test_samples, 2),
            )
        }
        task = Task("noisy_sine", SequenceIO(1, 1), per_step=True, metric=MSE, splits=splits)
        task.limit_train(self.train_limit)
        return task

    def draw(self, n: int, seed: int) -> SequenceData:
        g = torch.Generator().manual_seed(seed)
        gaps = torch.empty(n, self.steps + 1).exponential_(1 / self.mean_gap, generator=g)
        t = gaps.cumsum(dim=1)
        w = 1 + 2 * torch.rand(n, 1, generator=g)
        p = 6.283 * torch.rand(n, 1, generator=g)
        clean = torch.sin(w * t + p)
        seen = clean + self.noise * torch.randn(n, self.steps + 1, generator=g)
        return SequenceData(
            x=seen[:, :-1, None],
            dt=gaps[:, :-1],
            mask=torch.ones(n, self.steps, dtype=torch.bool),
            y=clean[:, 1:, None],
        )
