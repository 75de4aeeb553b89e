"""SeFT-Attn (Horn et al., ICML 2020): a time series as a set of observations, attention pooling.

As the reference's ``DeepSetAttentionModel`` (github.com/BorgwardtLab/Set_Functions_for_Time_Series,
``seft/models/deep_set_attention.py``, TensorFlow). Each observation ``n`` of a sequence (value
``v_n`` of channel ``d_n`` at time ``t_n``, :func:`~cfc_bench.models.whole.observation_set`)
is one set element

  s_n   = [sin(t_n/τ) ; cos(t_n/τ) ; v_n ; onehot(d_n)]    τ_k = max_timescale^(k/(K−1)), K = P/2

and the model is

  φ_n   = φ(s_n),  ψ̄ = mean_n ψ(s_n)                         MLPs of ReLU layers (he-uniform)
  e_n^h = ([s_n ; ψ̄] W_k)^h · q^h / √dot_dim               W_k without bias, q starting at 0
  a_n^h = softmax_n(e_n^h)                                    over the valid elements
  z     = [Σ_n a_n^1 φ_n ; … ; Σ_n a_n^H φ_n]
  y     = L ρ(z)                                              ρ an MLP, L the readout

``φ`` is ``phi_layers`` layers of ``phi_width`` then one of ``latent_width``; ``ψ``
``psi_layers`` of ``psi_width`` then one of ``psi_latent_width``; ``ρ`` ``rho_layers`` of
``rho_width``; every one ReLU, with dropout after each hidden layer of ``φ`` and ``ρ``. In
training each ``e_n^h`` is dropped (−1e9 added) with probability ``attn_dropout``. The output
is invariant to the order of the set's elements.

Differences from the reference: it adds the static descriptors as one more set element
through an encoder of their own; here PhysioNet's descriptors are ordinary observations at
time 0. Per-step outputs are the prefix outputs of
:class:`~cfc_bench.models.whole.WholeSequenceModel`, which is what the reference's online
variant (``cumulative=True``: running ψ mean, cumulative softmax) computes per time point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO
from cfc_bench.models.whole import WholeSequenceModel, observation_set, value_channels
from cfc_bench.ranges import ranged


@dataclass
class SeFTConfig(ModelConfig):
    """Defaults: the reference's ``get_hyperparameters`` defaults."""

    name: str = "seft"
    hidden: int = ranged(32, ge=1)  # rho_width
    rho_layers: int = ranged(3, ge=0)
    rho_dropout: float = ranged(0.0, ge=0, lt=1)
    phi_layers: int = ranged(3, ge=0)
    phi_width: int = ranged(32, ge=1)
    phi_dropout: float = ranged(0.0, ge=0, lt=1)
    latent_width: int = ranged(128, ge=1)
    psi_layers: int = ranged(2, ge=0)
    psi_width: int = ranged(64, ge=1)
    psi_latent_width: int = ranged(128, ge=1)
    dot_prod_dim: int = ranged(128, ge=1)
    heads: int = ranged(4, ge=1)
    attn_dropout: float = ranged(0.1, ge=0, lt=1)
    max_timescale: float = ranged(100.0, gt=0)
    positional_dims: int = ranged(4, ge=2)  # P: P/2 sines and P/2 cosines

    def build(self, io: SequenceIO) -> SeFT:
        return SeFT(self, io)


def relu_mlp(
    width_in: int, layers: int, width: int, dropout: float, out: int | None
) -> nn.Sequential:
    """``layers`` ReLU layers of ``width`` (dropout after each), then one ReLU layer of ``out``;
    he-uniform weights and zero biases, Keras' ``he_uniform``."""
    modules: list[nn.Module] = []
    for _ in range(layers):
        modules += [nn.Linear(width_in, width), nn.ReLU(), nn.Dropout(dropout)]
        width_in = width
    if out is not None:
        modules += [nn.Linear(width_in, out), nn.ReLU()]
    for m in modules:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return nn.Sequential(*modules)


class SeFT(WholeSequenceModel):
    def __init__(self, cfg: SeFTConfig, io: SequenceIO):
        state = cfg.hidden if cfg.rho_layers else cfg.latent_width * cfg.heads
        super().__init__(io, state)
        self.cfg = cfg
        self.channels = value_channels(io, "SeFT")
        k = cfg.positional_dims // 2
        self.register_buffer("timescales", cfg.max_timescale ** torch.linspace(0, 1, k))
        width = 2 * k + 1 + self.channels
        self.phi = relu_mlp(width, cfg.phi_layers, cfg.phi_width, cfg.phi_dropout, cfg.latent_width)
        self.psi = relu_mlp(width, cfg.psi_layers, cfg.psi_width, 0.0, cfg.psi_latent_width)
        self.keys = nn.Linear(
            width + cfg.psi_latent_width, cfg.dot_prod_dim * cfg.heads, bias=False
        )
        nn.init.kaiming_uniform_(self.keys.weight, nonlinearity="relu")
        self.queries = nn.Parameter(torch.zeros(cfg.heads, cfg.dot_prod_dim))
        self.rho = relu_mlp(
            cfg.latent_width * cfg.heads, cfg.rho_layers, cfg.hidden, cfg.rho_dropout, None
        )

    def elements(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor):
        """The set elements ``s [B,N,P+1+D]`` and which are valid ``[B,N]``."""
        obs, _ = observation_set(x, dt, mask, self.io.values_with_mask)
        scaled = obs.time.unsqueeze(-1) / self.timescales.to(x.dtype)
        s = torch.cat(
            [
                torch.sin(scaled),
                torch.cos(scaled),
                obs.value.unsqueeze(-1),
                F.one_hot(obs.channel, self.channels).to(x.dtype),
            ],
            dim=-1,
        )
        return s, obs.valid

    def pool(self, s: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``z [B, latent·H]``, the attention-weighted sums of ``φ`` over the valid elements."""
        keep = valid.unsqueeze(-1)
        count = keep.sum(dim=1, keepdim=True).clamp(min=1)
        psi_mean = torch.where(keep, self.psi(s), 0.0).sum(dim=1, keepdim=True) / count
        # e = [s ; ψ̄] W_k^h · q^h = [s ; ψ̄] (W_k^h q^h): one vector per head, no [B,N,H·dim] keys
        heads, dim = self.queries.shape
        u = torch.einsum("hdw,hd->wh", self.keys.weight.view(heads, dim, -1), self.queries)
        u = u / math.sqrt(dim)
        e = s @ u[: s.shape[-1]] + psi_mean @ u[s.shape[-1] :]  # [B,N,H]
        if self.training and self.cfg.attn_dropout > 0:
            dropped = torch.rand_like(e) < self.cfg.attn_dropout
            e = e + torch.where(dropped, -1e9, 0.0)
        e = torch.where(keep, e, -torch.inf)
        top = e.detach().amax(dim=1, keepdim=True)
        w = torch.exp(e - torch.where(torch.isfinite(top), top, 0.0))
        total = w.sum(dim=1, keepdim=True)
        a = torch.where(total > 0, w / torch.where(total > 0, total, 1.0), 0.0)
        z = a.transpose(1, 2) @ self.phi(s)  # [B,H,latent]
        return z.flatten(1)

    def summary(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.rho(self.pool(*self.elements(x, dt, mask)))
