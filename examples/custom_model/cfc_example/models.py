"""A GRU whose state decays with the time elapsed since the previous observation.

Before each update the state relaxes towards zero at a learned per-unit rate,
``h <- h * exp(-dt / tau)`` with ``tau = exp(log_tau) > 0``, then a GRU cell reads the
step's input: ``h_t = GRUCell(x_t, h_{t-1} * exp(-dt_t / tau))``. With ``dt = 0`` it is a
plain GRU. (A small model to show the plugin interface, not a baseline of the paper.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from cfc_bench.models import ModelConfig, SequenceIO, SequenceModel


@dataclass
class DecayGRUConfig(ModelConfig):
    hidden: int = 64
    tau_init: float = 1.0  # initial decay time constant, in the task's units of dt

    def build(self, io: SequenceIO) -> SequenceModel:
        return DecayGRU(io, self.hidden, self.tau_init)


class DecayGRU(SequenceModel):
    def __init__(self, io: SequenceIO, hidden: int, tau_init: float):
        super().__init__(io, state_size=hidden)
        self.cell = nn.GRUCell(io.input_size, hidden)
        self.log_tau = nn.Parameter(torch.full((hidden,), math.log(tau_init)))

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        out = []
        for t in range(x.shape[1]):
            h = h * torch.exp(-dt[:, t, None].clamp_min(0) / self.log_tau.exp())
            h = self.cell(x[:, t], h)
            out.append(h)
        return torch.stack(out, dim=1)
