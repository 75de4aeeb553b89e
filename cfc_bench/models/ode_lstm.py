"""ODE-LSTM (Lechner & Hasani 2020): an LSTM whose output state follows a learned ODE.

Two variants, the authors' two implementations:

``variant=torch`` (their PyTorch cell). At every step the LSTM cell reads the observation,
then its output state ``h`` (not the memory cell ``c``) evolves over the elapsed time
``dt_t`` under an autonomous MLP field, so with ``dt = 0`` the model is exactly an LSTM:

  h'_t, c_t = LSTMCell(x_t, (h_{t-1}, c_{t-1}))
  h_t       = ODESolve(dh/dt = f(h), h'_t, over dt_t)      (solvers.NeuralODE)

``variant=tensorflow`` (their TensorFlow cell ``node_cell.ODELSTM``, behind the rows that
the CfC paper copies). The ODE state ``s`` is separate from the LSTM's output ``u``: ``u``
drives a CT-RNN (``ct_rnn.CTRNNField``, leak 1) that evolves ``s`` from its previous value,
and ``s`` is both the output and the LSTM's recurrent input. The LSTM starts as that cell:
glorot input and orthogonal recurrent weights, one bias (zero but the forget gate's 3.0):

  u_t, c_t = LSTMCell(x_t, (s_{t-1}, c_{t-1}))
  s_t      = ODESolve(ds/dt = scale ⊙ tanh(W u_t + U s + b) − s, s_{t-1}, over dt_t)

The default solver is explicit Euler with 3 steps per interval (the paper's runs use Euler;
3 is the PyTorch cell's step count, 4 the TensorFlow cell's); ``ode.solver=rk4`` (or
midpoint, and dopri5 for ``variant=torch``) selects another. ``ode.units``, ``ode.layers``
and ``ode.activation`` shape the PyTorch variant's field only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import torch
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.models.cells import keras_init, lstm_biases, lstm_input, lstm_step
from cfc_bench.models.ct_rnn import CTRNNField
from cfc_bench.models.solvers import NeuralODE, ODEConfig, Solver, checked_solver
from cfc_bench.ranges import ranged

TENSORFLOW_FORGET_BIAS = 3.0  # node_cell.ODELSTM: sigmoid(fg + 3.0)


class ODELSTMVariant(Enum):
    torch = "torch"
    tensorflow = "tensorflow"


@dataclass
class ODELSTMConfig(ModelConfig):
    name: str = "ode_lstm"
    hidden: int = ranged(64, ge=1)
    variant: ODELSTMVariant = ODELSTMVariant.torch
    ode: ODEConfig = field(default_factory=lambda: ODEConfig(solver=Solver.euler, steps=3))

    def build(self, io: SequenceIO) -> ODELSTM:
        return ODELSTM(self, io)


class ODELSTM(SequenceModel):
    def __init__(self, cfg: ODELSTMConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.cell = nn.LSTMCell(io.input_size, cfg.hidden)
        self.variant = ODELSTMVariant(cfg.variant)
        if self.variant is ODELSTMVariant.torch:
            self.ode = NeuralODE(cfg.ode, cfg.hidden)
            return
        owner = "ode_lstm with variant=tensorflow"
        self.solver = checked_solver(cfg.ode.solver, cfg.ode.steps, owner)
        self.steps = cfg.ode.steps
        self.ctrnn = CTRNNField(cfg.hidden, cfg.hidden, tau=1.0)
        cell = self.cell
        keras_init(cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        lstm_biases(cell.bias_ih, cell.bias_hh, TENSORFLOW_FORGET_BIAS, one_bias=True)

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x_proj = lstm_input(self.cell, x).unbind(1)
        dts = dt.to(x.dtype).unsqueeze(-1).unbind(1)
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)  # torch: h; tensorflow: s
        c = torch.zeros_like(h)
        out = []
        for x_t, dt_t in zip(x_proj, dts, strict=True):
            u, c = lstm_step(self.cell, x_t, h, c)
            if self.variant is ODELSTMVariant.torch:
                h = self.ode(u, dt_t)
            else:
                h = self.ctrnn.evolve(self.ctrnn.input_map(u), h, dt_t, self.solver, self.steps)
            out.append(h)
        return torch.stack(out, dim=1)
