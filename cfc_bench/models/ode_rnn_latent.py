"""ODE-RNN as the Latent-ODE code builds it (Rubanova et al. 2019, ``run_models.py --ode-rnn``).

Not our ``ode_rnn`` (a GRUCell with RK4 between steps): the state is a mean ``y`` and a
standard deviation ``s`` updated by the reference's GRU unit with MLP gates
(:mod:`cfc_bench.models.rubanova`), and only the mean follows the ODE. At step ``k``, with
``x_k = [values·m ; m]`` (values zeroed where not observed, ``m`` the observed mask)::

  y'_k       = Euler(dy/dt = f(y), y_{k−1}, over d_k = time_scale·dt_k)   (max(1, ⌊|d|/m⌋−1) steps)
  (y_k, s_k) = GRU_unit(y'_k, s_{k−1}, x_k)    held, (y'_k, s_{k−1}), where nothing is observed
  out_k      = Linear(ReLU(Linear(ReLU(Linear(y_k)))))                    (300, 300 units)

with ``y_{−1} = s_{−1} = 0`` and ``f`` an MLP of ``ode_hidden_layers`` tanh layers, N(0, 0.1)
weights. The elapsed time is taken as given, sign included: under PhysioNet's
``protocol=paper`` it is the previous step's gap, negated, which is what the reference's
forward run integrates from its third step on (its ``run_odernn(run_backwards=False)``
integrates from ``t_{k−1}`` back to ``t_{k−2}`` before reading step k). Its first two
steps differ: it takes an Euler step of −0.01 and then one of the batch's whole time span
(not causal); here both steps have ``dt = 0`` under that protocol.

Objective (``Baseline.compute_all_losses``, PhysioNet's ``train_classif_w_reconstr``): the
reference minimises ``−L + 100·CE`` with ``L`` the mean over sequences of the masked
Gaussian likelihood (σ = ``obsrv_std``) of the next step predicted by a decoder
``Linear-tanh-Linear`` of the previous state (the first step predicts itself). With the
task's cross-entropy as the loss, :meth:`auxiliary_loss` is ``−L / classif_weight``: the
same objective divided by ``classif_weight`` (Adamax, the reference's optimizer, is
invariant to that scale). Off PhysioNet the reference trains on the cross-entropy alone
(``reconstruction: false``). Differences: sequences are their own time grid (the reference
runs every sequence of a batch over the union of their time stamps, so its ODE also moves
at other sequences' stamps and its sub-steps follow that grid), and ``time_scale`` is one
constant where the reference divides by each batch's latest time stamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.models.rubanova import (
    GRUUnit,
    classifier_features,
    gaussian_log_likelihood,
    init_normal,
    mlp,
    ode_rnn_scan,
    values_and_observed,
)
from cfc_bench.models.whole import value_channels
from cfc_bench.ranges import ranged


@dataclass
class ODERNNLatentConfig(ModelConfig):
    name: str = "ode_rnn_latent"
    hidden: int = ranged(20, ge=1)  # latent size (-l)
    ode_units: int = ranged(100, ge=1)  # -u
    ode_hidden_layers: int = ranged(2, ge=1)  # --rec-layers + 1
    gate_units: int = ranged(100, ge=1)  # -g, the GRU unit's MLPs
    decoder_units: int = ranged(100, ge=1)
    classifier_units: int = ranged(300, ge=1)
    time_scale: float = ranged(1.0, gt=0)  # model time per task time unit
    min_step: float = ranged(0.02, gt=0)  # m of the Euler sub-steps, in model time
    obsrv_std: float = ranged(0.01, gt=0)
    classif_weight: float = ranged(100.0, gt=0)  # the reference's weight of the CE term
    reconstruction: bool = True  # False: cross-entropy alone (the reference off PhysioNet)

    def build(self, io: SequenceIO) -> ODERNNLatent:
        return ODERNNLatent(self, io)


class ODERNNLatent(SequenceModel):
    def __init__(self, cfg: ODERNNLatentConfig, io: SequenceIO):
        super().__init__(io, cfg.classifier_units)
        self.cfg = cfg
        n_values = value_channels(io, "ode_rnn_latent")
        self.unit = GRUUnit(cfg.hidden, 2 * n_values, cfg.gate_units)
        self.ode = mlp(cfg.hidden, cfg.hidden, cfg.ode_hidden_layers, cfg.ode_units)
        self.decoder = mlp(cfg.hidden, n_values, 1, cfg.decoder_units)
        self.classifier = classifier_features(cfg.hidden, cfg.classifier_units)
        init_normal(self.readout)
        self._aux: torch.Tensor | None = None

    def auxiliary_loss(self) -> torch.Tensor | None:
        return self._aux

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        values, observed = values_and_observed(x, mask, self.io.values_with_mask)
        durations = dt.to(x.dtype) * self.cfg.time_scale
        means, _ = ode_rnn_scan(
            self.unit,
            self.ode,
            torch.cat([values, observed], -1),
            durations,
            self.cfg.min_step,
            self.cfg.hidden,
        )
        self._aux = None
        if self.training and self.cfg.reconstruction:
            # Step k is predicted from the state after step k−1; step 0 from itself.
            pred = torch.cat([values[:, :1], self.decoder(means[:, :-1])], 1)
            likelihood = gaussian_log_likelihood(pred, values, observed, self.cfg.obsrv_std)
            self._aux = -likelihood.mean() / self.cfg.classif_weight
        return self.classifier(means)
