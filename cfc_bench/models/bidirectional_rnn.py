"""The ODE-LSTM paper's "Bidirectional RNN" baseline (``node_cell.BidirectionalRNN``, behind
the XOR and Walker2d rows that the CfC paper copies): an LSTM and a CT-RNN side by side, each
reading the other's previous state. Not a Keras ``Bidirectional`` wrapper: the sequence is
read once, forwards; "bidirectional" is the coupling of the two cells.

  u_t, c_t = LSTMCell([x_t ; s_{t−1} ; dt_t], (u_{t−1}, c_{t−1}))
  s_t      = ODESolve(ds/dt = scale ⊙ tanh(W [x_t ; u_{t−1}] + U s + b) − s, s_{t−1}, over dt_t)
  y_t      = u_t + s_t                                                  the output

The LSTM is the reference's ``LSTMCell``, which appends the elapsed time to its input:
glorot-uniform input and orthogonal recurrent weights, one bias vector, zero but the forget
gate's +1 (``cells.keras_init``, ``cells.lstm_biases``). The CT-RNN is ``ct_rnn.CTRNNField``
with leak 1, integrated by 4 explicit Euler steps per interval (the reference's
``CTRNNCell(num_unfolds=4, method="euler")``; ``solver``, ``steps`` select others). All
states start at 0. The reference cell also creates an output ``Dense`` layer that it never
calls, so it holds no weights; it is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.models.cells import keras_init, lstm_biases, lstm_step
from cfc_bench.models.ct_rnn import CTRNNField
from cfc_bench.models.solvers import Solver, checked_solver
from cfc_bench.ranges import ranged

FORGET_BIAS = 1.0  # node_cell.LSTMCell: sigmoid(fg + 1.0)


@dataclass
class BidirectionalRNNConfig(ModelConfig):
    name: str = "bidirectional_rnn"
    hidden: int = ranged(64, ge=1)
    solver: Solver = Solver.euler  # the CT-RNN's: euler | midpoint | rk4
    steps: int = ranged(4, ge=1)  # the CT-RNN's solver steps per elapsed interval

    def build(self, io: SequenceIO) -> BidirectionalRNN:
        return BidirectionalRNN(self, io)


class BidirectionalRNN(SequenceModel):
    def __init__(self, cfg: BidirectionalRNNConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.solver = checked_solver(cfg.solver, cfg.steps, "bidirectional_rnn")
        self.steps = cfg.steps
        self.lstm = nn.LSTMCell(io.input_size + cfg.hidden + 1, cfg.hidden)  # [x ; s ; dt]
        cell = self.lstm
        keras_init(cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        lstm_biases(cell.bias_ih, cell.bias_hh, FORGET_BIAS, one_bias=True)
        self.ctrnn = CTRNNField(io.input_size + cfg.hidden, cfg.hidden, tau=1.0)  # [x ; u]

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n_in, hidden = x.shape[-1], self.lstm.hidden_size
        dt = dt.to(x.dtype).unsqueeze(-1)
        lstm, field = self.lstm, self.ctrnn
        w_x, w_s, w_dt = lstm.weight_ih.split([n_in, hidden, 1], dim=1)
        v_x, v_u = field.input_map.weight.split([n_in, hidden], dim=1)
        # the shares of x (and dt) in both cells' inputs, hoisted out of the time loop
        lstm_proj = F.linear(
            torch.cat([x, dt], dim=-1), torch.cat([w_x, w_dt], dim=1), lstm.bias_ih + lstm.bias_hh
        )
        field_proj = F.linear(x, v_x, field.input_map.bias)
        u = x.new_zeros(x.shape[0], hidden)
        c, s = torch.zeros_like(u), torch.zeros_like(u)
        out = []
        steps = zip(lstm_proj.unbind(1), field_proj.unbind(1), dt.unbind(1), strict=True)
        for lstm_t, field_t, dt_t in steps:
            drive = field_t + F.linear(u, v_u)  # the CT-RNN reads the LSTM's previous u
            u, c = lstm_step(lstm, lstm_t + F.linear(s, w_s), u, c)
            s = field.evolve(drive, s, dt_t, self.solver, self.steps)
            out.append(u + s)
        return torch.stack(out, dim=1)
