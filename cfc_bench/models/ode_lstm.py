"""ODE-LSTM (Lechner & Hasani 2020): an LSTM whose output state follows a learned ODE.

At every step ``t`` the LSTM cell reads the observation, then its output state ``h`` (not
the memory cell ``c``) evolves over the elapsed time ``dt_t`` (as the authors' PyTorch code):

  h'_t, c_t = LSTMCell(x_t, (h_{t-1}, c_{t-1}))
  h_t       = ODESolve(dh/dt = f(h), h'_t, over dt_t)      (solvers.NeuralODE)

so with ``dt = 0`` the model is exactly an LSTM. The default solver is explicit Euler with
3 steps per interval: Euler is the method of the paper's (TensorFlow) runs and 3 the
fixed-step count of the authors' PyTorch cell; ``ode.solver=rk4`` (or midpoint, dopri5)
selects another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.models.cells import lstm_input, lstm_step
from cfc_bench.models.solvers import NeuralODE, ODEConfig, Solver


@dataclass
class ODELSTMConfig(ModelConfig):
    name: str = "ode_lstm"
    hidden: int = 64
    ode: ODEConfig = field(default_factory=lambda: ODEConfig(solver=Solver.euler, steps=3))

    def build(self, io: SequenceIO) -> ODELSTM:
        return ODELSTM(self, io)


class ODELSTM(SequenceModel):
    def __init__(self, cfg: ODELSTMConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.cell = nn.LSTMCell(io.input_size, cfg.hidden)
        self.ode = NeuralODE(cfg.ode, cfg.hidden)

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x_proj = lstm_input(self.cell, x).unbind(1)
        dts = dt.to(x.dtype).unsqueeze(-1).unbind(1)
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        c = torch.zeros_like(h)
        out = []
        for x_t, dt_t in zip(x_proj, dts, strict=True):
            h, c = lstm_step(self.cell, x_t, h, c)
            h = self.ode(h, dt_t)
            out.append(h)
        return torch.stack(out, dim=1)
