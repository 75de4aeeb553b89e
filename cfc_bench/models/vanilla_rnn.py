"""The ODE-LSTM paper's "RNN decay" baseline (``node_cell.VanillaRNN``, behind the XOR and
Walker2d rows that the CfC paper copies): a two-layer RNN whose state drifts linearly in the
elapsed time.

  h_t = W_2 tanh(W_1 [x_t ; h_{t−1}] + b_1) + b_2 − dt_t·τ

``τ`` is a learned vector that starts at 0.1; ``W_1`` (``[I+H] → H``) and ``W_2``
(``H → H``) are Keras ``Dense`` layers (glorot-uniform kernels, zero biases), and ``h`` starts
at 0. The elapsed time enters only as the offset ``−dt·τ``, not as an input, and the offset
does not depend on ``h``: a linear drift, not a decay towards 0, so with ``dt = 0`` the model
is a plain two-layer RNN. The state is affine, not squashed. This is not the PhysioNet table's
"RNN decay" row, the Latent-ODE code's GRU with exponential decay.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.models.cells import keras_dense
from cfc_bench.ranges import ranged

TAU_INIT = 0.1  # node_cell.VanillaRNN: Constant(0.1)


@dataclass
class VanillaRNNConfig(ModelConfig):
    name: str = "rnn_decay"
    hidden: int = ranged(64, ge=1)

    def build(self, io: SequenceIO) -> VanillaRNN:
        return VanillaRNN(self, io)


class VanillaRNN(SequenceModel):
    def __init__(self, cfg: VanillaRNNConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.layer = keras_dense(io.input_size + cfg.hidden, cfg.hidden)  # W_1, b_1
        self.out_layer = keras_dense(cfg.hidden, cfg.hidden)  # W_2, b_2
        self.tau = nn.Parameter(torch.full((cfg.hidden,), TAU_INIT))

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w_x, w_h = self.layer.weight.split([x.shape[-1], self.tau.numel()], dim=1)
        x_proj = F.linear(x, w_x, self.layer.bias)  # hoisted out of the time loop
        drift = dt.to(x.dtype).unsqueeze(-1) * self.tau  # [B,T,H]
        h = x.new_zeros(x.shape[0], self.tau.numel())
        out = []
        for x_t, drift_t in zip(x_proj.unbind(1), drift.unbind(1), strict=True):
            h = self.out_layer(torch.tanh(x_t + F.linear(h, w_h))) - drift_t
            out.append(h)
        return torch.stack(out, dim=1)
