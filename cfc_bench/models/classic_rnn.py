"""The classic-RNN baselines of Rubanova et al. 2019 (latent_ode ``Classic_RNN``).

Per step ``t``, feature values ``v_t`` with observed mask ``m_t`` (``x = [v ; m]`` halves when
``io.values_with_mask``; otherwise every feature counts as observed at every valid step and
``m`` is not fed), elapsed time ``Δt_t = time_scale·dt_t``, and ``δ_t`` the time since each
feature's last observation (``δ_t = Δt_t + (1 − m_{t−1})·δ_{t−1}``, as in GRU-D):

  input     u_t = m_t ⊙ v_t                                  unobserved values read as 0
  impute    γx_t = exp(−clamp(w_x ⊙ δ_t + b_x, 0, 1000))      (``input_decay``)
            x̄_t  = (1/(t+1))·Σ_{s≤t} m_s ⊙ v_s                the sequence's mean so far
            u_t  = m_t ⊙ v_t + (1 − m_t) ⊙ (γx_t·v_last + (1 − γx_t)·x̄_t)
  gru       h'_t = GRU([u_t ; m_t ; Δt_t], h_{t−1})            (``cell=gru``)
  expdecay  γh_t = exp(−clamp(w_h·δ_t + b_h, 0, 1000))        one scalar per sequence and step
            h'_t = GRU([u_t ; m_t], γh_t·h_{t−1})              (``cell=expdecay``)
  hold      h_t  = h_{t−1} where nothing is observed at t ≥ 1, else h'_t
  output    y_t  = classifier(h_t)                             3-layer ReLU MLP 300-300, or linear

``v_last`` is the feature's last observed value (0 before its first observation). The rows:
``rnn_delta_t`` (gru), ``rnn_impute`` (gru + input_decay), ``rnn_decay`` of PhysioNet and
person activity (expdecay, here ``rnn_expdecay``), and latent_ode's GRU-D (expdecay +
input_decay, here ``gru_d_latent``). The GRU is torch's ``GRUCell`` with its default
initialisation (as the reference's ``GRUCell`` and ``RNNCellBase``), ``w_h, b_h`` a
``Linear(D, 1)`` and the classifier's layers start N(0, 0.1) with zero biases (the
reference's ``init_network_weights``).

Where the reference differs (``lib/rnn_baselines.py``, ``run_rnn``): it runs a batch on the
union of its records' time stamps, normalised to [0, 1] by the batch's latest one, with the
state held at the union steps where a record has nothing; it pairs step ``j`` with the gap to
the *next* time stamp, ``t_{j+1} − t_j`` (0 at the last), both as ``Δt`` and inside its
cumulative ``δ``, which it divides by the batch's largest ``δ``; its mean ``x̄`` is over the
whole union grid (future steps included, divided by the union's length). None of that is a
property of one sequence, so here ``Δt`` and ``δ`` are the sequence's own, causal, scaled
by the fixed ``time_scale``, and ``x̄`` is the running mean over the sequence's steps so
far (equal to the reference's per-record mean at the last step when every step is one of the
record's). Its ``w_x, b_x`` are allocated uninitialised (``torch.Tensor(1, D)``), and on a GPU
its ``Parameter(...).to(device)`` makes them plain tensors the optimiser never updates; here
they are parameters, uniform in ±1/√D like a torch ``Linear`` of D inputs. The objective is
the classification loss, plus, with ``decoder_units`` set, the reference's
PhysioNet reconstruction term (``--classif`` there trains ``−log-likelihood + 100 × CE``):
a Gaussian (σ = 0.01) log-density of each step's observed values as decoded from the state
before it by ``Linear(H, units)–tanh–Linear(units, D)``, averaged per sequence and feature.
It comes from :meth:`auxiliary_loss` divided by 100, so that the task's cross-entropy keeps
weight 1 (Adamax's steps do not depend on the loss's scale). On person activity the
reference trains the cross-entropy alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.models.cells import gru_input, gru_step
from cfc_bench.models.gru_d import (
    feature_count,
    input_decay_parameters,
    time_since_observed,
    values_and_observed,
)
from cfc_bench.models.rubanova import gaussian_log_likelihood, init_normal
from cfc_bench.ranges import ranged

CLASSIFIER_UNITS = 300  # latent_ode create_classifier: Linear(H,300) ReLU Linear(300,300) ReLU
DECAY_CAP = 1000.0  # the reference clamps every decay exponent to [0, 1000]
OBSERVATION_STD = 0.01  # run_models.py obsrv_std of its Gaussian likelihood
CLASSIFICATION_WEIGHT = 100.0  # Baseline.compute_all_losses: −log-likelihood + 100 × CE


class ClassicCell(Enum):
    gru = "gru"  # GRU reading Δt as an extra input
    expdecay = "expdecay"  # GRU whose state decays by exp(−relu(w·δ + b)) before each step


class Classifier(Enum):
    mlp = "mlp"  # the reference's default
    linear = "linear"  # its --linear-classif


@dataclass
class ClassicRNNConfig(ModelConfig):
    name: str = "rnn_delta_t"
    hidden: int = ranged(20, ge=1)  # latent_ode's -l (latent size = the GRU's state)
    cell: ClassicCell = ClassicCell.gru
    input_decay: bool = False  # impute unobserved inputs as GRU-D does (--input-decay)
    classifier: Classifier = Classifier.mlp
    time_scale: float = ranged(1.0, gt=0)  # Δt and δ are the task's elapsed time times this
    # hidden units of the decoder of the reconstruction term (--units); None: no such term
    decoder_units: int | None = ranged(None, ge=1)

    def build(self, io: SequenceIO) -> ClassicRNN:
        return ClassicRNN(self, io)


class ClassicRNN(SequenceModel):
    def __init__(self, cfg: ClassicRNNConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.cell_kind = ClassicCell(cfg.cell)
        self.time_scale = cfg.time_scale
        n_features = feature_count(io, "the classic RNN")
        gru_in = io.input_size + (1 if self.cell_kind is ClassicCell.gru else 0)
        self.cell = nn.GRUCell(gru_in, cfg.hidden)
        self.state_decay = None
        if self.cell_kind is ClassicCell.expdecay:
            self.state_decay = nn.Linear(n_features, 1)
            init_normal(self.state_decay)
        self.input_decay_weight = self.input_decay_bias = None
        if cfg.input_decay:
            self.input_decay_weight, self.input_decay_bias = input_decay_parameters(n_features)
        if Classifier(cfg.classifier) is Classifier.mlp:
            self.readout = nn.Sequential(
                nn.Linear(cfg.hidden, CLASSIFIER_UNITS),
                nn.ReLU(),
                nn.Linear(CLASSIFIER_UNITS, CLASSIFIER_UNITS),
                nn.ReLU(),
                nn.Linear(CLASSIFIER_UNITS, io.output_size),
            )
        init_normal(self.readout)
        self.decoder = None
        if cfg.decoder_units is not None:
            self.decoder = nn.Sequential(
                nn.Linear(cfg.hidden, cfg.decoder_units),
                nn.Tanh(),
                nn.Linear(cfg.decoder_units, n_features),
            )
            init_normal(self.decoder)
        self.reconstruction: torch.Tensor | None = None

    def step_inputs(
        self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The GRU's input every step ``[B,T,·]``, the state decay ``γh`` ``[B,T,1]`` (None for
        ``cell=gru``) and where the state is updated ``[B,T]``."""
        values, observed = values_and_observed(x, mask, self.io.values_with_mask)
        dt = self.time_scale * dt.to(x.dtype)
        # torch.where, not m·v: unobserved entries may hold anything, NaN included.
        seen = torch.where(observed, values, 0.0)
        gamma_h = None
        if self.input_decay_weight is not None or self.state_decay is not None:
            delta, last = time_since_observed(values, observed, dt, values.new_zeros(()))
        if self.input_decay_weight is not None:
            exponent = self.input_decay_weight * delta + self.input_decay_bias
            gamma_x = torch.exp(-exponent.clamp(0.0, DECAY_CAP))
            steps = torch.arange(1, x.shape[1] + 1, dtype=x.dtype, device=x.device)
            mean = seen.cumsum(dim=1) / steps[:, None]
            seen = torch.where(observed, values, gamma_x * last + (1.0 - gamma_x) * mean)
        if self.state_decay is not None:
            gamma_h = torch.exp(-self.state_decay(delta).clamp(0.0, DECAY_CAP))
        parts = [seen, observed.to(x.dtype)] if self.io.values_with_mask else [seen]
        if self.cell_kind is ClassicCell.gru:
            parts.append(dt.unsqueeze(-1))
        update = observed.any(dim=-1)
        update[:, 0] = True  # the reference updates its first step whatever it holds
        return torch.cat(parts, dim=-1), gamma_h, update

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        inputs, gamma_h, update = self.step_inputs(x, dt, mask)
        decays = gamma_h.unbind(1) if gamma_h is not None else [None] * x.shape[1]
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        out = []
        steps = zip(gru_input(self.cell, inputs).unbind(1), decays, update.unbind(1), strict=True)
        for x_t, gamma_t, update_t in steps:
            new = gru_step(self.cell, x_t, h if gamma_t is None else gamma_t * h)
            h = torch.where(update_t.unsqueeze(-1), new, h)
            out.append(h)
        states = torch.stack(out, dim=1)
        self.reconstruction = None
        if self.decoder is not None and self.training:
            values, observed = values_and_observed(x, mask, self.io.values_with_mask)
            self.reconstruction = self.reconstruction_loss(states, values, observed)
        return states

    def reconstruction_loss(
        self, states: torch.Tensor, values: torch.Tensor, observed: torch.Tensor
    ) -> torch.Tensor:
        """The reference's reconstruction term over 100: each step's values predicted by the
        decoder from the state before it (step 0 by its own data), the Gaussian log-density
        of the observed ones averaged per sequence and feature (a feature never observed
        counts 0), then over features and sequences, negated."""
        seen = torch.where(observed, values, 0.0)
        predicted = torch.cat([seen[:, :1], self.decoder(states[:, :-1])], dim=1)
        density = gaussian_log_likelihood(predicted, seen, observed.to(seen.dtype), OBSERVATION_STD)
        return -density.mean() / CLASSIFICATION_WEIGHT

    def auxiliary_loss(self) -> torch.Tensor | None:
        return self.reconstruction
