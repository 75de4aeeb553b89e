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

Autoencoder term (the script's ``hold_out`` and ``customloss``; weight
``reconstruction_weight``, the script's 1): in training, each channel with ``c``
observations holds out ``h = ⌊hold_out·c⌋`` of them drawn at random, where ``h > 1`` (so
channels with fewer than 10 observations keep all). The same two layers, given the kept
observations only, are read at the sequence's own step times ``t_k`` instead of ``ρ``
(smooth interpolant and intensity; ``μ`` the mean over the valid steps), giving ``χ_kd``;
the term, added by :meth:`auxiliary_loss`, is

  mean_b (1/D) Σ_d Σ_{held n of channel d} (v_n − χ_{k(n) d})² / max(1, h_bd)

(the script also divides by each MIMIC feature's squared standard deviation; here the
task's normalised values are used as they are). The prediction path reads every observation,
held-out ones included, as the script's does.

Differences from the reference: (1) the hold-out is drawn afresh at every training step
(the script draws it once, before training). (2) Its GRU also drops 20 % of the recurrent
state (``recurrent_dropout``); here only the inputs. (3) A channel with no observation is
imputed there with one observation of its training mean at time 0; here it gives
``σ = γ = λ = 0`` (so ``χ = μ = 0``). (4) Its reconstruction's ``μ`` averages over the
batch's padded union grid; here over each sequence's valid steps. (5) Sums over observations
are per-channel scatters over the observation set, not ``[B,D,T,R]`` tensors. Per-step
outputs are the prefix outputs of :class:`~cfc_bench.models.whole.WholeSequenceModel`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO
from cfc_bench.models.whole import (
    ObservationSet,
    WholeSequenceModel,
    observation_set,
    observation_times,
    value_channels,
)
from cfc_bench.ranges import ranged


@dataclass
class IPNetsConfig(ModelConfig):
    name: str = "ip_nets"
    hidden: int = ranged(100, ge=1)  # multivariate_example.py --hidden_units
    ref_points: int = ranged(192, ge=1)  # --reference_points
    time_span: float = ranged(48.0, gt=0)  # --hours_from_adm: ρ = linspace(0, time_span, R)
    kappa: float = ranged(10.0, gt=0)  # the transient interpolant's bandwidth factor
    dropout: float = ranged(0.2, ge=0, lt=1)  # the GRU's input dropout
    hold_out: float = ranged(0.2, ge=0, lt=1)  # share of each channel held out for the autoencoder
    reconstruction_weight: float = ranged(1.0, ge=0)  # the autoencoder term's weight; 0: none

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


def hold_out(obs: ObservationSet, channels: int, fraction: float) -> torch.Tensor:
    """``[B,N]`` bool: ``⌊fraction·c⌋`` observations drawn at random from each channel with
    ``c`` observations, where that is more than one (the script's ``hold_out``)."""
    counts = torch.zeros(obs.valid.shape[0], channels, dtype=torch.float64, device=obs.valid.device)
    counts.scatter_add_(1, obs.channel, obs.valid.to(torch.float64))
    held = torch.floor(counts * fraction)
    held = torch.where(held > 1, held, 0.0)
    # rank within the channel: sort by channel + a uniform key, invalid slots last
    key = torch.where(
        obs.valid,
        obs.channel.to(torch.float64) + torch.rand(obs.valid.shape, device=obs.valid.device),
        torch.inf,
    )
    order = key.argsort(dim=1)
    start = counts.cumsum(1) - counts  # each channel's first position in that order
    positions = torch.arange(key.shape[1], device=key.device).expand_as(key).to(torch.float64)
    sorted_rank = positions - start.gather(1, obs.channel.gather(1, order))
    rank = torch.empty_like(sorted_rank).scatter_(1, order, sorted_rank)
    return obs.valid & (rank < held.gather(1, obs.channel))


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
        self._aux: torch.Tensor | None = None

    def log_weights(
        self, obs: ObservationSet, query: torch.Tensor, use: torch.Tensor
    ) -> torch.Tensor:
        """``ℓ_rn = −α_d (t_n − q_r)²`` ``[B,R,N]`` for query times ``[1|B,R]``, −inf where
        ``use`` ``[B,N]`` is False."""
        alpha = F.softplus(self.kernel)[obs.channel].unsqueeze(1)  # [B,1,N]
        distance = (obs.time.unsqueeze(1) - query.unsqueeze(-1)) ** 2  # [B,R,N]
        return torch.where(use.unsqueeze(1), -alpha * distance, -torch.inf)

    def interpolants(self, obs: ObservationSet, d: int) -> tuple[torch.Tensor, ...]:
        """``σ, γ, log λ`` at the reference times, each ``[B,R,D]``."""
        logw = self.log_weights(obs, self.rho.to(obs.time.dtype).unsqueeze(0), obs.valid)
        log_intensity, smooth = channel_softmax(logw, obs.channel, obs.value, d)
        _, transient = channel_softmax(self.cfg.kappa * logw, obs.channel, obs.value, d)
        return smooth, transient, log_intensity

    def cross_channel(
        self, smooth: torch.Tensor, log_intensity: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``χ [B,R,D]``; ``μ`` is the mean of ``σ`` over the rows (those where ``rows`` ``[B,R]``
        is True)."""
        shift = finite_or_zero(log_intensity.detach().amax(dim=-1, keepdim=True))
        intensity_rel = torch.exp(log_intensity - shift)  # λ_rd / max_d λ_rd
        total = intensity_rel.sum(dim=-1, keepdim=True)
        w = torch.where(total > 0, intensity_rel / torch.where(total > 0, total, 1.0), 0.0)
        if rows is None:
            mu = smooth.mean(dim=1, keepdim=True)
        else:
            weight = rows.unsqueeze(-1).to(smooth.dtype)
            mu = (smooth * weight).sum(1, keepdim=True) / weight.sum(1, keepdim=True).clamp(min=1)
        return (w * (smooth - mu)) @ self.cross + mu

    def reconstruction_loss(
        self, obs: ObservationSet, d: int, dt: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The autoencoder term of the module docstring, one fresh hold-out."""
        held = hold_out(obs, d, self.cfg.hold_out)
        logw = self.log_weights(obs, observation_times(dt, mask), obs.valid & ~held)
        log_intensity, smooth = channel_softmax(logw, obs.channel, obs.value, d)
        chi = self.cross_channel(smooth, log_intensity, mask)  # [B,T,D]
        predicted = chi.flatten(1).gather(1, obs.step * d + obs.channel)
        error = torch.where(held, (obs.value - predicted) ** 2, 0.0)
        per_channel = torch.zeros_like(chi[:, 0]).scatter_add(1, obs.channel, error)
        count = torch.zeros_like(per_channel).scatter_add(1, obs.channel, held.to(chi.dtype))
        return (per_channel / count.clamp(min=1)).mean()

    def summary(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        obs, d = observation_set(x, dt, mask, self.io.values_with_mask)
        smooth, transient, log_intensity = self.interpolants(obs, d)
        chi = self.cross_channel(smooth, log_intensity)
        z = torch.cat([chi, torch.exp(log_intensity), transient - chi], dim=-1)
        keep = F.dropout(z.new_ones(z.shape[0], 1, z.shape[2]), self.cfg.dropout, self.training)
        _, h = self.gru(z * keep)
        weight = self.cfg.reconstruction_weight
        training_term = self.training and weight
        self._aux = weight * self.reconstruction_loss(obs, d, dt, mask) if training_term else None
        return h[0]

    def auxiliary_loss(self) -> torch.Tensor | None:
        return self._aux
