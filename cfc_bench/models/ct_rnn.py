"""CT-RNN (Funahashi & Nakamura 1993), as the ODE-LSTM paper's TensorFlow baselines run it.

Over each elapsed interval ``dt_t`` the state follows, with the observation ``x_t`` held:

  dh/dt = scale ⊙ tanh(W x_t + U h + b) − tau·h

integrated by ``steps`` equal steps of a fixed-step ``solver`` (the reference: RK4, 3 steps).
``tau=1`` is the "CT-RNN" of the paper's tables; ``tau=0`` (no leak) is the cell that the
ODE-LSTM scripts run as their "ODE-RNN" (``--model node``), whose rows the CfC paper copies
(``ode_rnn`` here is the GRU-based ODE-RNN of Rubanova et al.). The elapsed time enters only
as the integration interval, not as an input. Initialisation as the TensorFlow cell: glorot
``W``, orthogonal ``U``, zero ``b``, ``scale`` 1. :class:`CTRNNField` also drives the
TensorFlow variant of the ODE-LSTM (``ode_lstm.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.models.solvers import Solver, checked_solver, integrate_fixed
from cfc_bench.ranges import ranged


class CTRNNField(nn.Module):
    """``dh/dt = scale ⊙ tanh(W x + U h + b) − tau·h`` and its fixed-step integration."""

    def __init__(self, input_size: int, hidden: int, tau: float):
        super().__init__()
        if tau < 0:
            raise ValueError(f"tau must be 0 (no leak) or positive, got {tau}")
        self.input_map = nn.Linear(input_size, hidden)  # W, b
        self.recurrent = nn.Linear(hidden, hidden, bias=False)  # U
        self.scale = nn.Parameter(torch.ones(hidden))
        self.tau = tau
        with torch.no_grad():
            nn.init.xavier_uniform_(self.input_map.weight)
            nn.init.orthogonal_(self.recurrent.weight)
            self.input_map.bias.zero_()

    def evolve(
        self, x_proj: torch.Tensor, h: torch.Tensor, dt: torch.Tensor, solver: Solver, steps: int
    ) -> torch.Tensor:
        """``h [B,H]`` evolved over ``dt [B,1]`` with the input ``x_proj = input_map(x)`` held."""

        def field(state: torch.Tensor) -> torch.Tensor:
            drive = self.scale * torch.tanh(x_proj + self.recurrent(state))
            return drive - self.tau * state if self.tau else drive

        return integrate_fixed(field, h, dt, solver, steps)


@dataclass
class CTRNNConfig(ModelConfig):
    name: str = "ct_rnn"
    hidden: int = ranged(64, ge=1)
    tau: float = 1.0  # leak rate; 0: the ODE-LSTM scripts' "ODE-RNN" (--model node)
    solver: Solver = Solver.rk4  # euler | midpoint | rk4
    steps: int = ranged(3, ge=1)  # solver steps per elapsed interval

    def build(self, io: SequenceIO) -> CTRNN:
        return CTRNN(self, io)


class CTRNN(SequenceModel):
    def __init__(self, cfg: CTRNNConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.solver = checked_solver(cfg.solver, cfg.steps, "ct_rnn")
        self.steps = cfg.steps
        self.field = CTRNNField(io.input_size, cfg.hidden, cfg.tau)

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x_proj = self.field.input_map(x).unbind(1)  # hoisted out of the time loop
        dts = dt.to(x.dtype).unsqueeze(-1).unbind(1)
        h = x.new_zeros(x.shape[0], self.field.scale.shape[0])
        out = []
        for x_t, dt_t in zip(x_proj, dts, strict=True):
            h = self.field.evolve(x_t, h, dt_t, self.solver, self.steps)
            out.append(h)
        return torch.stack(out, dim=1)
