"""Phased LSTM (Neil et al. 2016) as the ODE-LSTM paper's TensorFlow cell
``node_cell.PhasedLSTM`` (github.com/mlech26l/ode-lstms) computes it.

An LSTM update proposes ``(c̃, h̃)``; a time gate ``k_t`` lets it through only in the open
phase of a learned oscillation and otherwise keeps the previous state, but for a leak:

  c̃_t = σ(f)·c_{t−1} + σ(i)·tanh(g),   h̃_t = σ(o)·tanh(c̃_t)      (i, f, g, o from x_t, h_{t−1})
  φ_t = ((t_t − s) mod τ) / τ                                         (floor mod: φ ∈ [0, 1))
  k_t = 2·φ_t·r_on        if φ_t < r_on/2
        2 − 2·φ_t/r_on    if φ_t < r_on
        α·φ_t             otherwise                                   (α = ``leak``, 1e-3)
  c_t = k_t·c̃_t + (1 − k_t)·c_{t−1},   h_t = k_t·h̃_t + (1 − k_t)·h_{t−1}

As the reference cell, and unlike the paper:
- the timestamp ``t_t`` is the elapsed time ``dt_t`` itself (what the reference scripts hand
  the cell as its time input), not the running sum of elapsed times;
- the rising half of the gate is ``2·φ·r_on`` (the paper: ``2·φ/r_on``), so the gate jumps
  at ``φ = r_on/2``;
- ``τ``, ``s`` and ``r_on`` are three scalars shared by all units (the paper: one of each
  per unit, ``τ`` drawn log-uniformly), each the softplus of a raw parameter that starts at
  0, so all three start at ln 2 ≈ 0.693;
- ``h̃`` reads the proposed cell ``c̃_t``, not the gated ``c_t`` (as the paper).

The LSTM starts as the Keras cell: glorot-uniform input weights, orthogonal recurrent
weights, one zero bias, and the constant +1 the reference adds to the forget gate
(``cells.keras_init``, ``cells.lstm_biases``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.models.cells import keras_init, lstm_biases, lstm_input, lstm_step
from cfc_bench.ranges import ranged

FORGET_BIAS = 1.0  # node_cell.PhasedLSTM: sigmoid(fg + 1.0)


@dataclass
class PhasedLSTMConfig(ModelConfig):
    name: str = "phased_lstm"
    hidden: int = ranged(64, ge=1)
    leak: float = ranged(0.001, ge=0.0, le=1.0)  # α, the closed gate's slope (the paper's 1e-3)

    def build(self, io: SequenceIO) -> PhasedLSTM:
        return PhasedLSTM(self, io)


def time_gate(
    t: torch.Tensor, period: torch.Tensor, shift: torch.Tensor, ratio: torch.Tensor, leak: float
) -> torch.Tensor:
    """``k_t`` of the module docstring for timestamps ``t`` (any shape)."""
    phase = torch.remainder(t - shift, period) / period
    falling = torch.where(phase < ratio, 2.0 - 2.0 * phase / ratio, leak * phase)
    return torch.where(phase < 0.5 * ratio, 2.0 * phase * ratio, falling)


class PhasedLSTM(SequenceModel):
    def __init__(self, cfg: PhasedLSTMConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.cell = nn.LSTMCell(io.input_size, cfg.hidden)
        cell = self.cell
        keras_init(cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        lstm_biases(cell.bias_ih, cell.bias_hh, FORGET_BIAS, one_bias=True)
        # raw τ, s, r_on (softplus gives the values); Keras' zero initialisation
        self.raw_period = nn.Parameter(torch.zeros(1))
        self.raw_shift = nn.Parameter(torch.zeros(1))
        self.raw_ratio = nn.Parameter(torch.zeros(1))
        self.leak = cfg.leak

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x_proj = lstm_input(self.cell, x).unbind(1)
        gates = time_gate(
            dt.to(x.dtype).unsqueeze(-1),
            F.softplus(self.raw_period),
            F.softplus(self.raw_shift),
            F.softplus(self.raw_ratio),
            self.leak,
        ).unbind(1)  # [B,1] per step: the gate depends on time only
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        c = torch.zeros_like(h)
        out = []
        for x_t, k in zip(x_proj, gates, strict=True):
            h_new, c_new = lstm_step(self.cell, x_t, h, c)
            c = c + k * (c_new - c)
            h = h + k * (h_new - h)
            out.append(h)
        return torch.stack(out, dim=1)
