"""Latent ODE with its classifier on z0 (Rubanova et al. 2019, ``run_models.py --latent-ode
--classif``), with an ODE-RNN (``encoder: odernn``) or an RNN (``encoder: rnn``) encoder, and
the same paper's RNN-VAE (``--rnn-vae``: RNN encoder, ``generative: rnn``).

Encoder, reading ``x_k = [values·m ; m]`` backwards from each sequence's last valid step
(``lib/encoder_decoder.py``), with ``g_k = time_scale·|dt_k|`` the gap before step k:

- odernn (``Encoder_z0_ODE_RNN``): the ODE-RNN of :mod:`cfc_bench.models.rubanova` run in
  reverse, its mean evolving by ``−0.01`` before the last step (the reference's first Euler
  step, from ``t_N + 0.01``) and by ``−g_{k+1}`` before step k, then by ``−g_0`` back to
  time 0; ``(μ, σ) = split(MLP([y ; s]))`` (tanh, 100 units), ``σ`` in absolute value.
- rnn (``Encoder_z0_RNN``): a GRU of ``rec_dims`` units over ``[g_k ; x_k]`` in reverse
  (``g_0`` read as 0), padding steps skipped; ``(μ, σ) = split(MLP(h))`` (tanh, 50 units).

Generative model (``LatentODE``, ``create_LatentODE_model``): ``K`` samples
``z0 = μ + σ·ε``; ``z(t) = ODESolve(dz/dt = f(z), z0)`` with dopri5 (rtol 1e-3, atol 1e-4,
torchdiffeq) at the sequences' absolute times ``t_k = Σ_{j≤k} g_j`` (the union over the
batch, as the reference's collation); ``x̂(t) = Linear(z(t))``. ``f`` is an MLP of
``gen_hidden_layers`` tanh layers. The classifier (300, 300 ReLU, then the readout) reads
``z0``.

RNN-VAE generative model (``generative: rnn``, ``RNN_VAE`` of ``lib/rnn_baselines.py``): one
sample ``z0 = μ + σ·ε`` per sequence (``samples``; the reference draws one) starts a GRU of
``hidden`` units, ``h_0 = z0``, that is fed its own reconstructions: at step ``i``
(``0 ≤ i < T − 1``) it reads ``[u_i ; 1 ; g_i]`` (an all-ones mask, ``g_0 = 0``) with
``u_0 = x_first`` and ``u_i = D(h_i)`` for ``i ≥ 1``, and ``h_{i+1} = GRU(·, h_i)``; ``D`` is
an MLP (one tanh layer of ``ode_units``). The reconstruction is shifted one step
(``shift_outputs``): ``x̂_0 = x_first``, ``x̂_k = D(h_{k−1})``. ``x_first`` is the first row
of the reference's reversed data, here the values of the sequence's last valid step (the
reference's is the last time stamp of the batch's union grid, a padding row of zeros for
most sequences).
The classifier reads ``μ`` in training as in evaluation (``label_predictions =
classifier(z0_mean)``).

Objective (``VAE_Baseline.compute_all_losses`` with ``train_classif_w_reconstr``): the
reference minimises ``−logsumexp_k(L_k − c·KL) + (100/K)·BCE`` (its cross-entropy is
averaged over the K samples' predictions and then divided by K once more), ``L_k`` the
batch's mean masked likelihood under sample k (σ = ``obsrv_std``), ``KL`` the mean over
sequences and latent units of KL(N(μ, σ²) ‖ N(0, 1)), ``c`` annealed by epoch
(:func:`cfc_bench.models.rubanova.kl_coefficient`; the model counts its training steps).
With the task's cross-entropy as the loss, :meth:`auxiliary_loss` is
``−logsumexp_k(L_k − c·KL)·K / classif_weight`` (the objective divided by ``100/K``).

Differences from the reference: in training the Latent ODE's classifier reads one sample of
z0 (the reference averages the cross-entropy over all K, the same expectation); in
evaluation it reads the mean μ (deterministic; the reference scores the K samples). Each
sequence is encoded (and the RNN-VAE's decoded) over its own steps, not over the batch's
union grid (where the reference's encoder also steps through the other sequences' time
stamps). ``time_scale`` is one constant where the reference divides by each batch's latest
time stamp.

Outputs: a whole-sequence model (:class:`cfc_bench.models.whole.WholeSequenceModel`): the
encoder reads the sequence backwards from its end, so the output at step k is the model's
output on the prefix ``0..k`` (T passes; in training each pass draws its own z0 and counts
one training step of the KL annealing, so on a per-step task the annealing runs T times
faster). The absolute times ``t_k = Σ_{j≤k} g_j`` are those of ``whole.observation_times``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO
from cfc_bench.models.rubanova import (
    GRUUnit,
    classifier_features,
    euler,
    gaussian_log_likelihood,
    init_normal,
    iwae_bound,
    kl_coefficient,
    mlp,
    normal_kl,
    ode_rnn_scan,
    solve_at_times,
    values_and_observed,
)
from cfc_bench.models.whole import WholeSequenceModel, value_channels
from cfc_bench.ranges import ranged

FIRST_STEP = 0.01  # the reference's encoder starts at t_N + 0.01


class Encoder(Enum):
    odernn = "odernn"
    rnn = "rnn"


class Generative(Enum):
    """``ode``: the Latent ODE's ``dz/dt = f(z)`` with a linear decoder; ``rnn``: RNN-VAE."""

    ode = "ode"
    rnn = "rnn"


@dataclass
class LatentODEConfig(ModelConfig):
    name: str = "latent_ode_ode"
    hidden: int = ranged(20, ge=1)  # latent size (-l)
    encoder: Encoder = Encoder.odernn  # --z0-encoder
    generative: Generative = Generative.ode  # ode: --latent-ode; rnn: --rnn-vae
    rec_dims: int = ranged(40, ge=1)  # --rec-dims
    rec_hidden_layers: int = ranged(4, ge=1)  # --rec-layers + 1 (odernn encoder's ODE)
    gen_hidden_layers: int = ranged(4, ge=1)  # --gen-layers + 1
    ode_units: int = ranged(50, ge=1)  # -u
    gate_units: int = ranged(50, ge=1)  # -g
    classifier_units: int = ranged(300, ge=1)
    samples: int = ranged(3, ge=1)  # n_traj_samples of z0 in training
    time_scale: float = ranged(1.0, gt=0)  # model time per task time unit
    min_step: float = ranged(0.02, gt=0)  # m of the encoder's Euler sub-steps
    obsrv_std: float = ranged(0.01, gt=0)
    classif_weight: float = ranged(100.0, gt=0)
    rtol: float = ranged(1e-3, gt=0)
    atol: float = ranged(1e-4, gt=0)
    kl_wait_epochs: int = ranged(50, ge=0)
    kl_rate: float = ranged(0.993, gt=0, lt=1)
    kl_steps_per_epoch: int = ranged(64, ge=1)  # training batches per epoch, for the annealing

    def build(self, io: SequenceIO) -> LatentODE:
        return LatentODE(self, io)


class LatentODE(WholeSequenceModel):
    def __init__(self, cfg: LatentODEConfig, io: SequenceIO):
        super().__init__(io, cfg.classifier_units)
        self.cfg = cfg
        n_values = value_channels(io, "latent_ode")
        self.encoder = Encoder(cfg.encoder)
        if self.encoder is Encoder.odernn:
            self.unit = GRUUnit(cfg.rec_dims, 2 * n_values, cfg.gate_units)
            self.rec_ode = mlp(cfg.rec_dims, cfg.rec_dims, cfg.rec_hidden_layers, cfg.ode_units)
            self.to_z0 = mlp(2 * cfg.rec_dims, 2 * cfg.hidden, 1, 100)
        else:
            self.rnn = nn.GRUCell(2 * n_values + 1, cfg.rec_dims)  # torch's init, as nn.GRU
            self.to_z0 = mlp(cfg.rec_dims, 2 * cfg.hidden, 1, 50)
        self.generative = Generative(cfg.generative)
        if self.generative is Generative.ode:
            self.gen_ode = mlp(cfg.hidden, cfg.hidden, cfg.gen_hidden_layers, cfg.ode_units)
            self.decoder: nn.Module = nn.Linear(cfg.hidden, n_values)
            init_normal(self.decoder)
        else:
            self.gen_rnn = nn.GRUCell(2 * n_values + 1, cfg.hidden)  # torch's init
            self.decoder = mlp(cfg.hidden, n_values, 1, cfg.ode_units)
        self.classifier = classifier_features(cfg.hidden, cfg.classifier_units)
        init_normal(self.readout)
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))
        self._aux: torch.Tensor | None = None

    def auxiliary_loss(self) -> torch.Tensor | None:
        return self._aux

    def encode(
        self, inputs: torch.Tensor, gaps: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(μ, σ)`` of z0 ``[B,hidden]`` from the whole sequence, read backwards."""
        if self.encoder is Encoder.odernn:
            first = gaps.new_full((gaps.shape[0], 1), -FIRST_STEP)
            durations = torch.cat([first, -gaps.flip(1)[:, :-1]], 1)
            means, stds = ode_rnn_scan(
                self.unit,
                self.rec_ode,
                inputs.flip(1),
                durations,
                self.cfg.min_step,
                self.cfg.rec_dims,
            )
            y = euler(self.rec_ode, means[:, -1], -gaps[:, :1], self.cfg.min_step)
            summary = torch.cat([y, stds[:, -1]], -1)
        else:
            read = torch.cat([gaps.unsqueeze(-1), inputs], -1)
            read[:, 0, 0] = 0.0  # the reference appends a zero gap for the first step
            h = inputs.new_zeros(inputs.shape[0], self.cfg.rec_dims)
            for x_k, valid in zip(read.flip(1).unbind(1), mask.flip(1).unbind(1), strict=True):
                h = torch.where(valid.unsqueeze(-1), self.rnn(x_k, h), h)
            summary = h
        mean, std = self.to_z0(summary).chunk(2, dim=-1)
        return mean, std.abs()

    def summary(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        values, observed = values_and_observed(x, mask, self.io.values_with_mask)
        # steps outside the mask (a prefix's later steps too) take no time
        gaps = torch.where(mask, dt.to(x.dtype).abs(), 0.0) * self.cfg.time_scale
        mean, std = self.encode(torch.cat([values, observed], -1), gaps, mask)
        self._aux = None
        if not self.training:
            return self.classifier(mean)
        cfg = self.cfg
        self.train_steps += 1
        z0 = mean + std * torch.randn(
            cfg.samples, *mean.shape, dtype=mean.dtype, device=mean.device
        )
        if self.generative is Generative.ode:
            path = solve_at_times(self.gen_ode, z0, gaps.cumsum(1), cfg.rtol, cfg.atol)
            reconstruction = self.decoder(path)
        else:
            reconstruction = self.rnn_reconstruction(z0, values, gaps, mask)
        likelihood = gaussian_log_likelihood(reconstruction, values, observed, cfg.obsrv_std)
        coef = kl_coefficient(
            int(self.train_steps), cfg.kl_steps_per_epoch, cfg.kl_wait_epochs, cfg.kl_rate
        )
        bound = iwae_bound(likelihood.mean(-1), normal_kl(mean, std).mean(), coef)
        self._aux = -bound * cfg.samples / cfg.classif_weight
        return self.classifier(z0[0] if self.generative is Generative.ode else mean)

    def rnn_reconstruction(
        self, z0: torch.Tensor, values: torch.Tensor, gaps: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """RNN-VAE's shifted reconstruction ``[K,B,T,D]`` from ``z0 [K,B,Z]`` (module docstring)."""
        k, b, _ = z0.shape
        last = (mask.sum(1) - 1).clamp(min=0)
        first = values[torch.arange(b, device=values.device), last].repeat(k, 1)  # [K·B,D]
        ones = torch.ones_like(first)
        step_gaps = torch.cat([gaps.new_zeros(b, 1), gaps[:, 1:]], 1).repeat(k, 1)
        h, u = z0.reshape(k * b, -1), first
        predictions = [first]
        for i in range(values.shape[1] - 1):
            decoded = self.decoder(h)
            predictions.append(decoded)
            if i > 0:
                u = decoded
            h = self.gen_rnn(torch.cat([u, ones, step_gaps[:, i : i + 1]], -1), h)
        return torch.stack(predictions, 1).reshape(k, b, *values.shape[1:])
