"""Interpolation-prediction networks (Shukla & Marlin, ICLR 2019): RBF interpolants, then a GRU.

As the reference (github.com/mlds-lab/interp-net, ``src/interpolation_layer.py`` and
``src/multivariate_example.py``, Keras). Each observation ``n`` of a sequence is a value
``v_n`` of channel ``d_n`` at time ``t_n`` (:func:`~cfc_bench.models.whole.observation_set`);
the interpolants are read at ``R`` reference times ``ρ_r = linspace(0, time_span, R)``.

Single-channel interpolation, per channel ``d`` with bandwidth ``α_d = softplus(k_d)``
(``k_d`` learned, starting at 0), over the observations ``n`` of channel ``d``:

  ℓ_rn  = −α_d (t_n − ρ_r)²
  σ_rd  = Σ_n exp(ℓ_rn) v_n / Σ_n exp(ℓ_rn)             smooth interpolant
  γ_rd  = the same with κ·ℓ_rn (κ = 10)                  transient interpolant
  λ_rd  = Σ_n exp(ℓ_rn)                                  intensity (computed as log λ)

Cross-channel interpolation, with ``P [D,D]`` learned (identity at the start) and
``μ_d = mean_r σ_rd``:

  w_rd  = λ_rd / Σ_d' λ_rd'
  χ_r   = (w_r ⊙ (σ_r − μ)) P + μ
  z_r   = [χ_r ; λ_r ; γ_r − χ_r] ∈ R^{3D}

Prediction network: a GRU over ``z_1 … z_R`` (input dropout, one mask per sequence as
Keras' ``dropout``) and the linear readout of its last state.

Differences from the reference: (1) its training adds an autoencoder loss (20 % of the
observations held out and reconstructed at their own times); the trainer here optimises the
task's loss only, so that term and the hold-out are absent. (2) Its GRU also drops 20 % of the
recurrent state (``recurrent_dropout``); here only the inputs. (3) A channel with no
observation is imputed there with one observation of its training mean at time 0; here it
gives ``σ = γ = λ = 0`` (so ``χ = μ = 0``). (4) Sums over observations are per-channel
scatters over the observation set, not ``[B,D,T,R]`` tensors. Per-step outputs are the
prefix outputs of :class:`~cfc_bench.models.whole.WholeSequenceModel`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO
from cfc_bench.models.whole import WholeSequenceModel, observation_set, value_channels
from cfc_bench.ranges import ranged


@dataclass
class IPNetsConfig(ModelConfig):
    name: str = "ip_nets"
    hidden: int = ranged(100, ge=1)  # multivariate_example.py --hidden_units
    ref_points: int = ranged(192, ge=1)  # --reference_points
    time_span: float = ranged(48.0, gt=0)  # --hours_from_adm: ρ = linspace(0, time_span, R)
    kappa: float = ranged(10.0, gt=0)  # the transient interpolant's bandwidth factor
    dropout: float = ranged(0.2, ge=0, lt=1)  # the GRU's input dropout

    def build(self, io: SequenceIO) -> IPNets:
        return IPNets(self, io)


def finite_or_zero(t: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(t), t, 0.0)


def channel_softmax(
    logw: torch.Tensor, channel: torch.Tensor, value: torch.Tensor, channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``log Σ_n exp(ℓ_rn)`` and ``Σ_n exp(ℓ_rn) v_n / Σ_n exp(ℓ_rn)`` over each channel's
    observations, ``[B,R,D]`` from ``ℓ [B,R,N]`` (−inf off the set); −inf and 0 for a channel
    with none. Each channel's sum is shifted by its largest ``ℓ`` (no gradient), so that far
    reference times do not underflow."""
    index = channel.unsqueeze(1).expand_as(logw)
    empty = logw.new_full((*logw.shape[:-1], channels), -torch.inf)
    top = finite_or_zero(empty.scatter_reduce(-1, index, logw.detach(), "amax"))
    e = torch.exp(logw - top.gather(-1, index))
    total = torch.zeros_like(top).scatter_add(-1, index, e)
    weighted = torch.zeros_like(top).scatter_add(-1, index, e * value.unsqueeze(1))
    seen = total > 0
    safe = torch.where(seen, total, 1.0)
    log_total = torch.where(seen, top + safe.log(), -torch.inf)
    return log_total, torch.where(seen, weighted / safe, 0.0)


class IPNets(WholeSequenceModel):
    def __init__(self, cfg: IPNetsConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        if io.values_with_mask and io.input_size % 2:
            raise ValueError(
                f"IP-Nets reads x as [values ; observed-mask] halves, but the input size "
                f"{io.input_size} is odd: the task must give one mask column per value"
            )
        self.cfg = cfg
        d = value_channels(io, "IP-Nets")
        self.kernel = nn.Parameter(torch.zeros(d))  # α = softplus(0) = log 2 at the start
        self.cross = nn.Parameter(torch.eye(d))
        self.register_buffer("rho", torch.linspace(0.0, cfg.time_span, cfg.ref_points))
        self.gru = nn.GRU(3 * d, cfg.hidden, batch_first=True)

    def interpolants(
        self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """``σ, γ, log λ`` at the reference times, each ``[B,R,D]``."""
        obs, d = observation_set(x, dt, mask, self.io.values_with_mask)
        alpha = F.softplus(self.kernel)[obs.channel].unsqueeze(1)  # [B,1,N]
        distance = (obs.time.unsqueeze(1) - self.rho.to(x.dtype)[:, None]) ** 2  # [B,R,N]
        logw = torch.where(obs.valid.unsqueeze(1), -alpha * distance, -torch.inf)
        log_intensity, smooth = channel_softmax(logw, obs.channel, obs.value, d)
        _, transient = channel_softmax(self.cfg.kappa * logw, obs.channel, obs.value, d)
        return smooth, transient, log_intensity

    def summary(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        smooth, transient, log_intensity = self.interpolants(x, dt, mask)
        shift = finite_or_zero(log_intensity.detach().amax(dim=-1, keepdim=True))
        intensity_rel = torch.exp(log_intensity - shift)  # λ_rd / max_d λ_rd
        total = intensity_rel.sum(dim=-1, keepdim=True)
        w = torch.where(total > 0, intensity_rel / torch.where(total > 0, total, 1.0), 0.0)
        mu = smooth.mean(dim=1, keepdim=True)
        chi = (w * (smooth - mu)) @ self.cross + mu
        z = torch.cat([chi, torch.exp(log_intensity), transient - chi], dim=-1)
        keep = F.dropout(z.new_ones(z.shape[0], 1, z.shape[2]), self.cfg.dropout, self.training)
        _, h = self.gru(z * keep)
        return h[0]
