"""GRU-D (Che et al. 2018): a GRU that decays missing inputs towards their mean, and its state.

Per feature ``d`` with value ``x_t``, observed mask ``m_t`` and elapsed time ``dt_t``:

  δ_t  = dt_t + (1 − m_{t−1})·δ_{t−1},  δ_{−1} = 0       time since the last observation before t
  γx_t = exp(−max(0, w_x·δ_t + b_x))                      input decay (one weight per feature)
  γh_t = exp(−max(0, W_h δ_t + b_h))                      state decay (features → hidden units)
  x̂_t  = m_t·x_t + (1 − m_t)·(γx_t·x_last + (1 − γx_t)·x_mean)
  h_t  = GRUCell([x̂_t ; m_t], γh_t ⊙ h_{t−1})

``x_last`` is the feature's last observed value (``x_mean`` before its first observation).
With zero elapsed time and non-positive decay biases nothing decays (``x̂`` is the last
observation); as ``δ`` grows with positive decay weights ``x̂ → x_mean`` and the carried
state ``→ 0``.

Inputs: when ``io.values_with_mask`` (PhysioNet), ``x = [values ; observed-mask]`` halves;
otherwise every feature counts as observed at every valid step (``m ≡ 1``, so only the state
decay acts, and ``m`` is not fed to the GRU, where it would only duplicate the bias).
Padded steps count as unobserved.

``x_mean``, the empirical mean of each feature's observed values, is not known when the model
is built, so it is accumulated: in training mode every forward pass first adds the batch's
observed values (valid steps only) to the buffers ``observed_sum``/``observed_count``; the
mean is their ratio (0 for a feature never observed yet). From the end of the first epoch
on it is exactly the training set's mean (every epoch adds the same values once); during the
first epoch it is the mean of the batches seen so far. It is saved with the weights, and
evaluation never changes it. (Che et al. start with ``δ = 0``; here the first step's ``δ`` is
its own ``dt``, the time since the sequence began.)

Variant ``odelstm``: the ``GRUD`` cell of the ODE-LSTM code (mlech26l/ode-lstms,
``node_cell.py``), "without the masking", behind the XOR and Walker2d rows the CfC paper
copies. No input decay, no mean imputation, no mask input (``x`` is read as given); the state
decays with the step's own elapsed time, and Keras' dense layers (glorot kernels, zero biases)
make the GRU:

  γ_t = exp(−relu(w·dt_t + b))          (w, b: [H], a dense layer of the scalar dt)
  ĥ   = γ_t ⊙ h_{t−1}
  r   = σ(W_r [x_t ; ĥ] + b_r),   z = σ(W_z [x_t ; ĥ] + b_z)
  h̃   = tanh(W_h [x_t ; r ⊙ ĥ] + b_h),   h_t = z ⊙ ĥ + (1 − z) ⊙ h̃
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.models.cells import gru_input, gru_step
from cfc_bench.ranges import ranged


class GRUDVariant(Enum):
    """``che``: Che et al.'s GRU-D; ``odelstm``: node_cell.py's GRUD (module docstring)."""

    che = "che"
    odelstm = "odelstm"


@dataclass
class GRUDConfig(ModelConfig):
    name: str = "gru_d"
    hidden: int = ranged(64, ge=1)
    variant: GRUDVariant = GRUDVariant.che

    def build(self, io: SequenceIO) -> SequenceModel:
        if GRUDVariant(self.variant) is GRUDVariant.odelstm:
            return DecayedStateGRU(self, io)
        return GRUD(self, io)


def feature_count(io: SequenceIO, model: str) -> int:
    """The number of features ``D``: half the input when it is ``[values ; observed-mask]``."""
    if io.values_with_mask and io.input_size % 2:
        raise ValueError(
            f"{model} reads x as [values ; observed-mask] halves, but the input size "
            f"{io.input_size} is odd: the task must give one mask column per value"
        )
    return io.input_size // 2 if io.values_with_mask else io.input_size


def input_decay_parameters(n_features: int) -> tuple[nn.Parameter, nn.Parameter]:
    """Per-feature input-decay weight and bias, initialised as the diagonal of a torch
    ``Linear(n_features, n_features)`` (uniform in ±1/√n_features)."""
    bound = 1.0 / math.sqrt(n_features)
    return (
        nn.Parameter(torch.empty(n_features).uniform_(-bound, bound)),
        nn.Parameter(torch.empty(n_features).uniform_(-bound, bound)),
    )


def values_and_observed(
    x: torch.Tensor, mask: torch.Tensor, values_with_mask: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature values ``[B,T,D]`` and where they were observed (bool, padding excluded): the
    halves of ``x = [values ; observed-mask]``, or ``x`` observed at every valid step."""
    valid = mask.bool().unsqueeze(-1)
    if values_with_mask:
        values, flags = x.chunk(2, dim=-1)
        return values, (flags > 0.5) & valid
    return x, valid.expand_as(x)


def time_since_observed(
    values: torch.Tensor, observed: torch.Tensor, dt: torch.Tensor, before: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``δ`` and ``x_last`` ``[B,T,D]`` of every step: the time since each feature's last
    observation before the step, ``δ_t = dt_t + (1 − m_{t−1})·δ_{t−1}`` (``δ_{−1} = 0``), and
    its last observed value up to and including the step (``before`` until the first one).
    They depend on the data alone: one cheap scan, then everything else is batched."""
    delta = torch.zeros_like(values[:, 0])
    x_last = before.expand_as(delta)
    observed_before = torch.ones_like(delta, dtype=torch.bool)
    deltas, lasts = [], []
    for v_t, m_t, dt_t in zip(
        values.unbind(1), observed.unbind(1), dt.unsqueeze(-1).unbind(1), strict=True
    ):
        delta = dt_t + torch.where(observed_before, 0.0, delta)
        x_last = torch.where(m_t, v_t, x_last)
        observed_before = m_t
        deltas.append(delta)
        lasts.append(x_last)
    return torch.stack(deltas, dim=1), torch.stack(lasts, dim=1)


class GRUD(SequenceModel):
    def __init__(self, cfg: GRUDConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        n_features = feature_count(io, "GRU-D")
        self.n_features = n_features
        self.input_decay_weight, self.input_decay_bias = input_decay_parameters(n_features)
        self.hidden_decay = nn.Linear(n_features, cfg.hidden)
        gru_in = 2 * n_features if io.values_with_mask else n_features
        self.cell = nn.GRUCell(gru_in, cfg.hidden)
        # float64: the counts of a long run pass float32's exact-integer range (2**24).
        self.register_buffer("observed_sum", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("observed_count", torch.zeros(n_features, dtype=torch.float64))

    @property
    def x_mean(self) -> torch.Tensor:
        return self.observed_sum / self.observed_count.clamp(min=1.0)

    def decayed_inputs(
        self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The GRU's input ``[x̂ ; m]`` (or ``x̂``) and the state decay ``γh``, every step."""
        values, observed = values_and_observed(x, mask, self.io.values_with_mask)
        # torch.where, not m·x: unobserved entries may hold anything, NaN included.
        observed_values = torch.where(observed, values, 0.0)
        if self.training:
            with torch.no_grad():
                self.observed_sum += observed_values.sum(dim=(0, 1)).to(torch.float64)
                self.observed_count += observed.sum(dim=(0, 1)).to(torch.float64)
        x_mean = self.x_mean.to(x.dtype)
        delta, x_last = time_since_observed(values, observed, dt.to(x.dtype), x_mean)
        gamma_x = torch.exp(-torch.relu(self.input_decay_weight * delta + self.input_decay_bias))
        gamma_h = torch.exp(-torch.relu(self.hidden_decay(delta)))
        x_hat = torch.where(observed, values, gamma_x * x_last + (1.0 - gamma_x) * x_mean)
        if self.io.values_with_mask:
            x_hat = torch.cat([x_hat, observed.to(x.dtype)], dim=-1)
        return x_hat, gamma_h

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x_hat, gamma_h = self.decayed_inputs(x, dt, mask)
        x_proj = gru_input(self.cell, x_hat).unbind(1)
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        out = []
        for x_t, gamma_t in zip(x_proj, gamma_h.unbind(1), strict=True):
            h = gru_step(self.cell, x_t, gamma_t * h)
            out.append(h)
        return torch.stack(out, dim=1)


class DecayedStateGRU(SequenceModel):
    """The ``odelstm`` variant: node_cell.py's GRUD (module docstring)."""

    def __init__(self, cfg: GRUDConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        hidden, width = cfg.hidden, io.input_size + cfg.hidden
        self.decay = nn.Linear(1, hidden)
        self.gates = nn.Linear(width, 2 * hidden)  # [r ; z], each its own Keras dense layer
        self.candidate = nn.Linear(width, hidden)
        with torch.no_grad():
            blocks = [self.decay.weight, *self.gates.weight.chunk(2), self.candidate.weight]
            for block in blocks:  # glorot with each dense layer's own fans
                nn.init.xavier_uniform_(block)
            for layer in (self.decay, self.gates, self.candidate):
                layer.bias.zero_()

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n_in = x.shape[-1]
        # The input halves of every step at once, outside the time loop.
        gates_x = nn.functional.linear(x, self.gates.weight[:, :n_in], self.gates.bias)
        cand_x = nn.functional.linear(x, self.candidate.weight[:, :n_in], self.candidate.bias)
        gamma = torch.exp(-torch.relu(self.decay(dt.to(x.dtype).unsqueeze(-1))))
        gates_h, cand_h = self.gates.weight[:, n_in:], self.candidate.weight[:, n_in:]
        h = x.new_zeros(x.shape[0], cand_h.shape[0])
        out = []
        for g_x, c_x, gamma_t in zip(
            gates_x.unbind(1), cand_x.unbind(1), gamma.unbind(1), strict=True
        ):
            h_hat = gamma_t * h
            r, z = torch.sigmoid(g_x + h_hat @ gates_h.t()).chunk(2, dim=-1)
            candidate = torch.tanh(c_x + (r * h_hat) @ cand_h.t())
            h = candidate + z * (h_hat - candidate)
            out.append(h)
        return torch.stack(out, dim=1)
