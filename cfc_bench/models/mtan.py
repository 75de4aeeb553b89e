"""mTAND-Enc (Shukla & Marlin, ICLR 2021): multi-time attention onto reference times, a GRU.

As the reference's ``enc_mtan_classif`` (github.com/reml-lab/mTAN, ``src/models.py``). Each
valid step ``j`` is an observation at time ``t_j`` (hours, :func:`observation_times`, divided
by ``time_scale``) of the input channels ``v_j = x_j`` (``[values ; observed-mask]`` on
PhysioNet, both halves read under the observed mask ``m_j``, as the reference's
``cat(mask, mask)``).

  φ(t)    = [a·t + b ; sin(W·t + c)] ∈ R^E                  learned time embedding (E = embed_time)
  q_r, k_j = Lq φ(ρ_r), Lk φ(t_j), split into H heads of E/H  ρ = linspace(0, 1, ref_points)
  s_rj^h  = q_r^h · k_j^h / √(E/H)
  a_rc^h  = Σ_j m_jc exp(s_rj^h) v_jc / Σ_j m_jc exp(s_rj^h)  softmax over channel c's observations
  u_r     = Lo [a_r^1 ; … ; a_r^H] ∈ R^hidden
  z       = GRU(u_1, …, u_R) (its last state)
  y       = L3 ReLU(L2 ReLU(L1 z))               classifier 300–300–O, L3 the readout

A channel with no observation gives ``a = 0`` (in the reference the softmax over all keys at
−1e9 averages its zero-filled values, also 0). Per-step outputs are the prefix outputs of
:class:`~cfc_bench.models.whole.WholeSequenceModel` (``T`` whole passes).

``queries=observed`` is the reference's human-activity encoder (``enc_mtan_classif_activity``):
the queries are the observation times themselves, ``u_i = Lo a_i`` over keys ``t_j``, a GRU
over the steps and a linear readout at every step (``y_i = L h_i``, no 300–300 classifier).
The reference lets step ``i`` attend to every step, later ones included; here it attends to
steps ``j ≤ i`` only, so that per-step outputs are causal (the contract), at one pass.

Differences from the reference: times are the task's (see
:mod:`cfc_bench.models.whole`; the reference divides each split's times by their largest,
48 h on PhysioNet, here a fixed ``time_scale``); the attention is computed as two matrix
products (:func:`~cfc_bench.models.whole.masked_attention`), not as an ``[B,h,R,T,C]``
tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from cfc_bench.errors import ConfigError
from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.models.whole import (
    WholeSequenceModel,
    masked_attention,
    observation_times,
    observed_channels,
    value_channels,
)
from cfc_bench.ranges import ranged


class Queries(Enum):
    """Where the attention is read: ``reference`` times (mTAND-Enc) or the ``observed`` ones."""

    reference = "reference"
    observed = "observed"


@dataclass
class MTANConfig(ModelConfig):
    name: str = "mtan"
    hidden: int = ranged(128, ge=1)  # the reference's --rec-hidden
    embed_time: int = ranged(128, ge=2)  # --embed-time (its default)
    num_heads: int = ranged(1, ge=1)  # --num-heads
    ref_points: int = ranged(128, ge=1)  # linspace(0, 1, 128) in tanenc_classification.py
    classifier_units: int = ranged(300, ge=1)  # enc_mtan_classif's 300–300 classifier
    time_scale: float = ranged(48.0, gt=0)  # times are divided by it (hours on PhysioNet)
    queries: Queries = Queries.reference

    def __post_init__(self) -> None:
        if self.embed_time % self.num_heads:
            raise ConfigError(
                f"model.embed_time={self.embed_time} is not a multiple of model.num_heads="
                f"{self.num_heads}: each head reads embed_time/num_heads dimensions"
            )

    def build(self, io: SequenceIO) -> SequenceModel:
        if self.queries is Queries.reference:
            return MTANEnc(self, io)
        return MTANSteps(self, io)


class MultiTimeAttention(nn.Module):
    """``u = Lo [a^1 ; … ; a^H]`` at the query times (equations above)."""

    def __init__(self, cfg: MTANConfig, io: SequenceIO):
        super().__init__()
        value_channels(io, "mTAN")  # checks the input layout
        self.values_with_mask = io.values_with_mask
        self.time_scale = cfg.time_scale
        self.heads = cfg.num_heads
        self.linear_t = nn.Linear(1, 1)
        self.periodic = nn.Linear(1, cfg.embed_time - 1)
        self.query = nn.Linear(cfg.embed_time, cfg.embed_time)
        self.key = nn.Linear(cfg.embed_time, cfg.embed_time)
        self.out = nn.Linear(io.input_size * cfg.num_heads, cfg.hidden)

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        t = t.unsqueeze(-1)
        return torch.cat([self.linear_t(t), torch.sin(self.periodic(t))], dim=-1)

    def split(self, e: torch.Tensor) -> torch.Tensor:
        """``[B,N,E]`` → ``[B,h,N,E/h]``."""
        return e.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def attend(
        self,
        queries: torch.Tensor,
        t: torch.Tensor,
        key_mask: torch.Tensor,
        values: torch.Tensor,
        observed: torch.Tensor,
    ) -> torch.Tensor:
        """``[B,R,hidden]`` for query times ``[B,R]``, key times ``[B,T]``, ``values`` and
        ``observed`` ``[B,T,C]``, and the keys each query may read (``key_mask``)."""
        q = self.split(self.query(self.embed(queries)))
        k = self.split(self.key(self.embed(t)))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        a = masked_attention(scores, key_mask, values, observed)  # [B,h,R,C]
        return self.out(a.transpose(1, 2).flatten(-2))

    def forward(
        self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor, rho: torch.Tensor | None
    ) -> torch.Tensor:
        """At the reference times ``rho [R]`` over every valid step, or (``rho`` None) at each
        step's own time over that step and the earlier ones."""
        t = observation_times(dt, mask) / self.time_scale
        observed = observed_channels(x, mask, self.values_with_mask)
        if rho is not None:
            queries, key_mask = rho.to(x.dtype).expand(x.shape[0], -1), mask[:, None, None, :]
        else:
            steps = torch.arange(x.shape[1], device=x.device)
            causal = steps[None, :] <= steps[:, None]  # key j ≤ query i
            queries, key_mask = t, causal & mask[:, None, None, :]
        return self.attend(queries, t, key_mask, x, observed)


class MTANEnc(WholeSequenceModel):
    """``queries=reference``: the mTAND-Enc classifier."""

    def __init__(self, cfg: MTANConfig, io: SequenceIO):
        super().__init__(io, cfg.classifier_units)
        self.attention = MultiTimeAttention(cfg, io)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, batch_first=True)
        self.register_buffer("rho", torch.linspace(0.0, 1.0, cfg.ref_points))
        self.classifier = nn.Sequential(
            nn.Linear(cfg.hidden, cfg.classifier_units),
            nn.ReLU(),
            nn.Linear(cfg.classifier_units, cfg.classifier_units),
            nn.ReLU(),
        )

    def summary(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _, z = self.gru(self.attention(x, dt, mask, self.rho))
        return self.classifier(z[0])


class MTANSteps(SequenceModel):
    """``queries=observed``: the human-activity encoder, attending to past steps only."""

    def __init__(self, cfg: MTANConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.attention = MultiTimeAttention(cfg, io)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, batch_first=True)

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.gru(self.attention(x, dt, mask, None))[0]
