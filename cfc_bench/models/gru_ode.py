"""GRU-ODE (De Brouwer et al. 2019) without its Bayesian observation update, as the ODE-LSTM
paper's TensorFlow baseline (``node_cell.GRUODE``, behind the rows that the CfC paper copies)
computes it. Over each elapsed interval ``dt_t`` the state follows the GRU's
continuous-time form, with the observation ``x_t`` held:

  r = σ(W_r [x_t ; h] + b_r),  z = σ(W_z [x_t ; h] + b_z),  g = tanh(W_g [x_t ; r ⊙ h] + b_g)
  dh/dt = (1 − z) ⊙ (g − h)

integrated by 4 explicit Euler steps of ``dt_t/4`` (the reference's ``num_unfolds=4``;
``solver``, ``steps`` select others). The observation enters only through the field, so with
``dt = 0`` the state does not move. ``W_r, W_z, W_g`` are Keras ``Dense`` layers:
glorot-uniform kernels over the fused input, biases 0 but ``b_r``, which starts at 1; ``h``
starts at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.models.cells import keras_dense
from cfc_bench.models.solvers import Field, Solver, checked_solver, integrate_fixed
from cfc_bench.ranges import ranged

RESET_BIAS = 1.0  # node_cell.GRUODE: the reset gate's bias_initializer=constant(1)


@dataclass
class GRUODEConfig(ModelConfig):
    name: str = "gru_ode"
    hidden: int = ranged(64, ge=1)
    solver: Solver = Solver.euler  # euler | midpoint | rk4
    steps: int = ranged(4, ge=1)  # solver steps per elapsed interval

    def build(self, io: SequenceIO) -> GRUODE:
        return GRUODE(self, io)


class GRUODE(SequenceModel):
    def __init__(self, cfg: GRUODEConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.solver = checked_solver(cfg.solver, cfg.steps, "gru_ode")
        self.steps = cfg.steps
        fused = io.input_size + cfg.hidden
        self.reset = keras_dense(fused, cfg.hidden, bias=RESET_BIAS)  # W_r, b_r
        self.update = keras_dense(fused, cfg.hidden)  # W_z, b_z
        self.candidate = keras_dense(fused, cfg.hidden)  # W_g, b_g

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n_in, hidden = x.shape[-1], self.update.out_features
        layers = (self.reset, self.update, self.candidate)
        w_x, w_h = zip(
            *(layer.weight.split([n_in, hidden], dim=1) for layer in layers), strict=True
        )
        # the input's share of the three layers, hoisted out of the time and solver loops
        x_proj = F.linear(x, torch.cat(w_x), torch.cat([layer.bias for layer in layers]))
        w_rz, w_g = torch.cat(w_h[:2]), w_h[2]
        h = x.new_zeros(x.shape[0], hidden)
        out = []
        for x_t, dt_t in zip(x_proj.unbind(1), dt.to(x.dtype).unsqueeze(-1).unbind(1), strict=True):
            x_rz, x_g = x_t.split([2 * hidden, hidden], dim=-1)
            field = self.field(x_rz, x_g, w_rz, w_g)
            h = integrate_fixed(field, h, dt_t, self.solver, self.steps)
            out.append(h)
        return torch.stack(out, dim=1)

    @staticmethod
    def field(
        x_rz: torch.Tensor, x_g: torch.Tensor, w_rz: torch.Tensor, w_g: torch.Tensor
    ) -> Field:
        """``dh/dt`` with the observation's shares ``x_rz`` (reset, update) and ``x_g`` held."""

        def dh_dt(h: torch.Tensor) -> torch.Tensor:
            r, z = torch.sigmoid(x_rz + F.linear(h, w_rz)).chunk(2, dim=-1)
            g = torch.tanh(x_g + F.linear(r * h, w_g))
            return (1.0 - z) * (g - h)

        return dh_dt
