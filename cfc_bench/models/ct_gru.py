"""CT-GRU (Mozer, Kazakov & Lindsey 2017), as the ODE-LSTM paper's TensorFlow baseline
(``node_cell.CTGRU``, whose row the CfC paper copies) computes it.

Each hidden unit keeps ``M`` traces ``h̃_m``, one per time scale ``τ_m = 10^(m/2)``
(``m = 0 … M−1``: 1, √10, 10, …, 10^3.5 for the reference's ``M = 8``); the unit's state is
their sum ``h = Σ_m h̃_m``. One step, with input ``x`` and elapsed time ``dt``:

  ln τᴿ = W_R [x ; h] + b_R                      H·M values, one per unit and scale
  r_m   = softmax_m(−(ln τᴿ_m − ln τ_m)²)         retrieval: soft choice of a time scale
  q     = tanh(W_Q [x ; Σ_m r_m h̃_m] + b_Q)       the event signal
  ln τˢ = W_S [x ; h] + b_S
  s_m   = softmax_m(−(ln τˢ_m − ln τ_m)²)         storage: soft choice of a time scale
  h̃'_m  = ((1 − s_m)·h̃_m + s_m·q) · exp(−dt/τ_m)
  h'    = Σ_m h̃'_m                               the output

The elapsed time enters only through the decay ``exp(−dt/τ_m)``, which the reference applies
after the update, with the step's own ``dt`` (the gap before the observation), so the event
just stored decays too: with ``dt = 0`` nothing decays; as ``dt`` grows the fast scales are
forgotten first. The traces start at 0.

``W_R, W_Q, W_S`` are Keras ``Dense`` layers: glorot-uniform kernels over the fused input,
zero biases. The H·M outputs of ``W_R, W_S`` are read as ``[M, H]`` (the reference reads
``[H, M]``: a permutation of the outputs of an i.i.d.-initialised layer, the same model), so
that the traces ``[B, M, H]`` keep the units contiguous: torch's CPU softmax and sums along a
short last dimension are many times slower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.models.cells import keras_dense
from cfc_bench.ranges import ranged


@dataclass
class CTGRUConfig(ModelConfig):
    name: str = "ct_gru"
    hidden: int = ranged(64, ge=1)
    scales: int = ranged(8, ge=1)  # M, time scales per unit (the reference: 8)

    def build(self, io: SequenceIO) -> CTGRU:
        return CTGRU(self, io)


class CTGRU(SequenceModel):
    def __init__(self, cfg: CTGRUConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        fused, traces = io.input_size + cfg.hidden, cfg.hidden * cfg.scales
        self.retrieval = keras_dense(fused, traces)  # W_R, b_R
        self.detect = keras_dense(fused, cfg.hidden)  # W_Q, b_Q
        self.storage = keras_dense(fused, traces)  # W_S, b_S
        self.scales = cfg.scales

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n_in, hidden, scales = x.shape[-1], self.detect.out_features, self.scales
        # ln τ_m = m·ln(10)/2, in the input's precision
        ln_tau = 0.5 * math.log(10.0) * torch.arange(scales, dtype=x.dtype, device=x.device)
        w_rx, w_rh = self.retrieval.weight.split([n_in, hidden], dim=1)
        w_sx, w_sh = self.storage.weight.split([n_in, hidden], dim=1)
        w_qx, w_qq = self.detect.weight.split([n_in, hidden], dim=1)
        # the input's share of the three layers, hoisted out of the time loop; retrieval and
        # storage side by side as [B, T, 2, M, H]
        batch, steps = x.shape[:2]
        x_rs = F.linear(
            x, torch.cat([w_rx, w_sx]), torch.cat([self.retrieval.bias, self.storage.bias])
        ).view(batch, steps, 2, scales, hidden)
        x_q = F.linear(x, w_qx, self.detect.bias)
        w_h = torch.cat([w_rh, w_sh])
        decays = torch.exp(-dt.to(x.dtype).unsqueeze(-1) * torch.exp(-ln_tau)).unsqueeze(-1)
        traces = x.new_zeros(batch, scales, hidden)
        h = x.new_zeros(batch, hidden)
        out = []
        for xrs_t, xq_t, decay in zip(x_rs.unbind(1), x_q.unbind(1), decays.unbind(1), strict=True):
            predicted = xrs_t + F.linear(h, w_h).view(batch, 2, scales, hidden)
            r, s = scale_choice(predicted, ln_tau).unbind(1)
            q = torch.tanh(xq_t + F.linear((r * traces).sum(1), w_qq))
            traces = torch.lerp(traces, q.unsqueeze(1), s) * decay
            h = traces.sum(1)
            out.append(h)
        return torch.stack(out, dim=1)


def scale_choice(predicted: torch.Tensor, ln_tau: torch.Tensor) -> torch.Tensor:
    """``softmax_m(−(ln τ'_m − ln τ_m)²)`` of predicted log time scales ``[..., M, H]``."""
    return torch.softmax(-(predicted - ln_tau.unsqueeze(-1)).square(), dim=-2)
