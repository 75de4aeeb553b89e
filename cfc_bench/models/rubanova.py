"""Building blocks of the Latent-ODE code (Rubanova, Chen & Duvenaud 2019, ``latent_ode``).

Shared by ``ode_rnn_latent`` and ``latent_ode``; the maths is that of the reference's
``lib/encoder_decoder.py`` (``GRU_unit``, ``Encoder_z0_ODE_RNN.run_odernn``), ``lib/utils.py``
(``create_net``, ``init_network_weights``), ``lib/base_models.py`` (the classifier) and
``lib/likelihood_eval.py`` (the masked Gaussian likelihood).

GRU unit (state mean ``y``, standard deviation ``s``, input ``x = [values·m ; m]``)::

  u  = σ(MLP_u([y ; s ; x]))      r = σ(MLP_r([y ; s ; x]))      (each MLP: Linear-tanh-Linear)
  (ỹ, s̃) = MLP_n([y·r ; s·r ; x])                               (2·latent outputs, halves)
  y' = (1 − u)·ỹ + u·y            s' = |(1 − u)·|s̃| + u·s|

and the state is held (``y' = y, s' = s``) at a step where no feature is observed.

Euler sub-steps. An interval of duration ``d`` is integrated by ``n = max(1, ⌊|d|/m⌋ − 1)``
equal explicit Euler steps: the reference takes ``max(2, int(|d|/m))`` time points from
``linspace`` (one step fewer), or a single step when ``|d| < m``, with ``m`` = (last − first
time stamp of the batch)/50, which is 1/50 once its collation divides the times by the
batch's latest one. Steps are thus at most ``m`` long only when ``|d| ≥ 3m``; shorter gaps
take one step of up to ``3m``.

Likelihood (``obsrv_std`` σ): per sequence and feature, the mean over its observed steps of
``log N(x; x̂, σ²)`` (0 for a feature never observed), then the mean over features.

Time. Tasks give elapsed times ``dt``; these models scale them by ``time_scale`` into the
reference's units (its collation divides the hours by the batch's latest time stamp, about
48 h on PhysioNet). Absolute times, where a model needs them, are ``t_k = Σ_{j≤k} |dt_j|``:
the time stamps under the default protocol; under PhysioNet's ``protocol=paper`` (whose dt
is the previous step's gap, negated) the time stamp of the *previous* step, which keeps
them causal and non-decreasing.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def init_normal(module: nn.Module, std: float = 0.1) -> None:
    """The reference's ``init_network_weights``: every Linear's weight N(0, std²), bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            nn.init.zeros_(m.bias)


def mlp(n_in: int, n_out: int, hidden_layers: int, units: int) -> nn.Sequential:
    """``hidden_layers`` tanh layers of ``units`` then a linear output, N(0, 0.1) init (the
    reference's ``create_net(n_layers=hidden_layers − 1)``)."""
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, units), nn.Tanh()]
        width = units
    layers.append(nn.Linear(width, n_out))
    net = nn.Sequential(*layers)
    init_normal(net)
    return net


def classifier_features(n_in: int, units: int) -> nn.Sequential:
    """The reference classifier's first two ReLU layers (``create_classifier``: 300, 300);
    the model's linear readout is its third layer."""
    net = nn.Sequential(nn.Linear(n_in, units), nn.ReLU(), nn.Linear(units, units), nn.ReLU())
    init_normal(net)
    return net


def values_and_observed(
    x: torch.Tensor, mask: torch.Tensor, values_with_mask: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature values ``[B,T,D]`` (0 where not observed, as the reference's data tensor) and
    the observed mask (float, 0 on padding). Without a mask half every valid step counts as
    fully observed."""
    valid = mask.unsqueeze(-1).to(x.dtype)
    if values_with_mask:
        values, flags = x.chunk(2, dim=-1)
        observed = (flags > 0.5).to(x.dtype) * valid
    else:
        values, observed = x, valid.expand_as(x)
    return torch.where(observed > 0, values, 0.0), observed


class GRUUnit(nn.Module):
    """The reference's ``GRU_unit`` with its masked update (see the module docstring)."""

    def __init__(self, latent: int, n_in: int, units: int):
        super().__init__()
        self.update_gate = mlp(2 * latent + n_in, latent, 1, units)
        self.reset_gate = mlp(2 * latent + n_in, latent, 1, units)
        self.new_state = mlp(2 * latent + n_in, 2 * latent, 1, units)

    def forward(
        self, y: torch.Tensor, s: torch.Tensor, x: torch.Tensor, update: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """New ``(y, s)``; ``update`` ``[B,1]`` is True where a feature is observed."""
        joint = torch.cat([y, s, x], dim=-1)
        u = torch.sigmoid(self.update_gate(joint))
        r = torch.sigmoid(self.reset_gate(joint))
        new_y, new_s = self.new_state(torch.cat([y * r, s * r, x], dim=-1)).chunk(2, dim=-1)
        y_next = (1 - u) * new_y + u * y
        s_next = ((1 - u) * new_s.abs() + u * s).abs()
        return torch.where(update, y_next, y), torch.where(update, s_next, s)


def euler_substeps(duration: torch.Tensor, min_step: float) -> torch.Tensor:
    """Sub-steps per interval, ``max(1, ⌊|d|/m⌋ − 1)`` (module docstring), as ``d``'s dtype."""
    return (torch.floor(duration.abs() / min_step) - 1).clamp(min=1.0)


def euler(f: nn.Module, h: torch.Tensor, duration: torch.Tensor, min_step: float) -> torch.Tensor:
    """Integrate ``dh/dt = f(h)`` over ``duration`` ``[B,1]`` with each row's own sub-steps."""
    n = euler_substeps(duration, min_step)
    step = duration / n
    for k in range(int(n.max().item()) if n.numel() else 0):
        h = torch.where(n > k, h + step * f(h), h)
    return h


def ode_rnn_scan(
    unit: GRUUnit,
    f: nn.Module,
    inputs: torch.Tensor,
    durations: torch.Tensor,
    min_step: float,
    latent: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ODE-RNN recurrence over ``inputs [B,T,2D]`` (``[values ; observed]``) in the given
    order: at step k the mean evolves by Euler over ``durations[:, k]``, then the GRU unit
    reads the step (held where nothing is observed). Means and stds ``[B,T,latent]``."""
    y = inputs.new_zeros(inputs.shape[0], latent)
    s = torch.zeros_like(y)
    n_values = inputs.shape[-1] // 2
    update = (inputs[..., n_values:].sum(-1, keepdim=True) > 0).unbind(1)
    means, stds = [], []
    for x_k, d_k, u_k in zip(
        inputs.unbind(1), durations.unsqueeze(-1).unbind(1), update, strict=True
    ):
        y = euler(f, y, d_k, min_step)
        y, s = unit(y, s, x_k, u_k)
        means.append(y)
        stds.append(s)
    return torch.stack(means, 1), torch.stack(stds, 1)


def gaussian_log_likelihood(
    pred: torch.Tensor, values: torch.Tensor, observed: torch.Tensor, std: float
) -> torch.Tensor:
    """Per sequence ``[...,B]``: the masked likelihood of the module docstring, for predictions
    ``[...,B,T,D]`` of ``values``/``observed`` ``[B,T,D]``."""
    z = (values - pred) / std
    log_p = -0.5 * z.square() - math.log(std) - 0.5 * math.log(2 * math.pi)
    per_feature = (log_p * observed).sum(-2) / observed.sum(-2).clamp(min=1.0)
    return per_feature.mean(-1)


def normal_kl(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, std²) ‖ N(0, 1)), elementwise."""
    return -torch.log(std) + 0.5 * (std.square() + mean.square()) - 0.5


def iwae_bound(likelihood: torch.Tensor, kl: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """``logsumexp_k(L_k − c·KL)`` over the ``K`` samples of z0 (``VAE_Baseline``'s "IWAE
    loss", without a −log K), with ``L_k`` the batch's mean likelihood under sample ``k``."""
    return torch.logsumexp(likelihood - kl_coef * kl, dim=0)


def kl_coefficient(step: int, steps_per_epoch: int, wait_epochs: int, rate: float) -> float:
    """``run_models.py``'s KL annealing at training step ``step`` (1-based): 0 for the first
    ``wait_epochs`` epochs, then ``1 − rate^(epoch − wait_epochs)``, epoch = step // steps."""
    epoch = step // steps_per_epoch
    return 0.0 if epoch < wait_epochs else 1.0 - rate ** (epoch - wait_epochs)


SEGMENT = 64  # output times per dopri5 solve (solve_at_times)


def solve_at_times(
    f: nn.Module, z0: torch.Tensor, times: torch.Tensor, rtol: float, atol: float
) -> torch.Tensor:
    """``z(t)`` ``[K,B,T,Z]`` of ``dz/dt = f(z)`` from ``z(0) = z0`` ``[K,B,Z]`` at each
    sequence's ``times`` ``[B,T]`` (non-negative), solved with dopri5 (torchdiffeq) over the
    union of the batch's time stamps, as the reference's batches are, in segments of
    ``SEGMENT`` output times, each starting from the previous one's end (torchdiffeq writes
    its outputs in place into one tensor, whose backward pass copies that whole tensor once
    per output: quadratic in a PhysioNet batch's ~2,000 time stamps)."""
    from torchdiffeq import odeint

    grid = torch.unique(torch.cat([times.new_zeros(1), times.flatten()]))  # sorted
    pieces, z = [z0.unsqueeze(0)], z0
    for start in range(0, len(grid) - 1, SEGMENT):
        segment = grid[start : start + SEGMENT + 1]
        piece = odeint(lambda t, y: f(y), z, segment, rtol=rtol, atol=atol, method="dopri5")
        pieces.append(piece[1:])
        z = piece[-1]
    path = torch.cat(pieces)
    index = torch.searchsorted(grid, times)  # [B,T]
    k, b, _ = z0.shape
    path = path.permute(1, 2, 0, 3)  # [K,B,U,Z]
    return path.gather(2, index.expand(k, b, -1).unsqueeze(-1).expand(-1, -1, -1, path.shape[-1]))
