"""ODE-RNN (Rubanova, Chen & Duvenaud 2019): a GRU whose state follows a learned ODE between steps.

At every step ``t`` the state first evolves over the elapsed time since the previous step,
then the GRU reads the new observation:

  h'_t = ODESolve(dh/dt = f(h), h_{t-1}, over dt_t)      (solvers.NeuralODE)
  h_t  = GRUCell(x_t, h'_t)

with ``h_{-1} = 0`` and ``f`` an MLP. The paper's baselines use RK4 with 3 steps per
interval (the default); ``ode.solver=dopri5`` integrates adaptively with ``ode.rtol/atol``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.models.cells import gru_input, gru_step
from cfc_bench.models.solvers import NeuralODE, ODEConfig
from cfc_bench.ranges import ranged


@dataclass
class ODERNNConfig(ModelConfig):
    name: str = "ode_rnn"
    hidden: int = ranged(64, ge=1)
    ode: ODEConfig = field(default_factory=ODEConfig)

    def build(self, io: SequenceIO) -> ODERNN:
        return ODERNN(self, io)


class ODERNN(SequenceModel):
    def __init__(self, cfg: ODERNNConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.cell = nn.GRUCell(io.input_size, cfg.hidden)
        self.ode = NeuralODE(cfg.ode, cfg.hidden)

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x_proj = gru_input(self.cell, x).unbind(1)
        dts = dt.to(x.dtype).unsqueeze(-1).unbind(1)
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        out = []
        for x_t, dt_t in zip(x_proj, dts, strict=True):
            h = gru_step(self.cell, x_t, self.ode(h, dt_t))
            out.append(h)
        return torch.stack(out, dim=1)
