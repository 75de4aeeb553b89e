"""Continuous-time LSTM of the neural Hawkes process (Mei & Eisner 2017) as the ODE-LSTM
paper's TensorFlow cell ``node_cell.HawkLSTMCell`` (github.com/mlech26l/ode-lstms) computes it.

Two memory cells: ``c`` and its target ``c̄``. One affine map of ``[x_t ; h_{t−1}]`` gives
seven blocks ``g, i, f, o, ī, f̄, d``:

  c_t   = σ(f)·c_{t−1} + σ(i)·tanh(g)
  c̄_t   = σ(f̄)·c̄_{t−1} + σ(ī)·tanh(g)
  δ_t   = softplus(d)                                   (decay rate, per unit)
  c(dt) = c̄_t + (c_t − c̄_t)·exp(−δ_t·dt_t)              (dt = 0: c_t; dt → ∞: c̄_t)
  h_t   = σ(o)·tanh(c(dt_t))

As the reference cell, and unlike the paper's event-time reading: the decay runs over the
elapsed time ``dt_t`` that arrives with ``x_t``, applied to the cells just updated by ``x_t``;
the carried state is ``(c_t, c̄_t, h_t)``, so the decayed ``c(dt)`` enters only the output
``h_t`` (which the next step's gates read), not the next step's memory update.

Initialisation as the Keras cell: glorot-uniform input weights, orthogonal recurrent
weights, zero bias; no forget-gate offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.models.cells import keras_init
from cfc_bench.ranges import ranged

BLOCKS = 7  # g, i, f, o, ī, f̄, d


@dataclass
class CTLSTMConfig(ModelConfig):
    name: str = "ct_lstm"
    hidden: int = ranged(64, ge=1)

    def build(self, io: SequenceIO) -> CTLSTM:
        return CTLSTM(self, io)


class CTLSTM(SequenceModel):
    def __init__(self, cfg: CTLSTMConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.input_map = nn.Linear(io.input_size, BLOCKS * cfg.hidden)
        self.recurrent = nn.Linear(cfg.hidden, BLOCKS * cfg.hidden, bias=False)
        keras_init(self.input_map.weight, self.recurrent.weight, self.input_map.bias)

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x_proj = self.input_map(x).unbind(1)  # hoisted out of the time loop
        dts = dt.to(x.dtype).unsqueeze(-1).unbind(1)
        h = x.new_zeros(x.shape[0], self.recurrent.in_features)
        c = c_bar = torch.zeros_like(h)
        out = []
        for x_t, dt_t in zip(x_proj, dts, strict=True):
            g, i, f, o, i_bar, f_bar, d = (x_t + self.recurrent(h)).chunk(BLOCKS, dim=-1)
            candidate = torch.tanh(g)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * candidate
            c_bar = torch.sigmoid(f_bar) * c_bar + torch.sigmoid(i_bar) * candidate
            decayed = c_bar + (c - c_bar) * torch.exp(-F.softplus(d) * dt_t)
            h = torch.sigmoid(o) * torch.tanh(decayed)
            out.append(h)
        return torch.stack(out, dim=1)
