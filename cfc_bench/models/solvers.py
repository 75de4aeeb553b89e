"""A learned autonomous ODE ``dh/dt = f(h)`` and the solvers that evolve it (ODE-RNN, ODE-LSTM).

``f`` is an MLP: ``layers`` hidden layers of ``units`` with ``activation``, then a linear
map back to the state (``layers=0`` makes ``f`` affine). :class:`NeuralODE` evolves a batch
of states ``h [B,H]`` over per-sample intervals ``dt [B,1]``:

- ``euler``, ``midpoint``, ``rk4``: ``steps`` equal steps of size ``k = dt/steps`` each,
  e.g. RK4 ``h += k·(k1 + 2·k2 + 2·k3 + k4)/6``; global error O(k), O(k²), O(k⁴).
- ``dopri5``: adaptive Dormand–Prince through ``torchdiffeq.odeint``. One solve serves the
  whole batch by integrating over normalised time ``s ∈ [0,1]`` with ``dh/ds = dt_b·f(h)``,
  so sample ``b`` ends at its own ``h(dt_b)`` (``dt_b = 0`` leaves it unchanged, negative
  ``dt_b`` integrates backwards). The step-size controller's error norm is the largest
  per-sample RMS, so ``rtol``/``atol`` hold for every sample, not only on batch average.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn
from torchdiffeq import odeint

from cfc_bench.models.layers import Activation, activation
from cfc_bench.ranges import ranged

Field = Callable[[torch.Tensor], torch.Tensor]


class Solver(Enum):
    euler = "euler"
    midpoint = "midpoint"
    rk4 = "rk4"
    dopri5 = "dopri5"


@dataclass
class ODEConfig:
    """The ``ode`` block of the ODE-RNN and ODE-LSTM configs."""

    units: int = ranged(64, ge=1)  # width of f's hidden layers
    layers: int = ranged(1, ge=0)  # hidden layers of f (0: f is affine)
    activation: Activation = Activation.tanh
    solver: Solver = Solver.rk4
    steps: int = ranged(3, ge=1)  # fixed-step solvers: steps per elapsed interval
    rtol: float = 1e-3  # dopri5 only
    atol: float = 1e-4  # dopri5 only


# addcmul(h, k, v) = h + k·v in one op: the per-op overhead dominates at these sizes.
def euler(f: Field, h: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(h, k, f(h))


def midpoint(f: Field, h: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(h, k, f(torch.addcmul(h, 0.5 * k, f(h))))


def rk4(f: Field, h: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    half = 0.5 * k
    k1 = f(h)
    k2 = f(torch.addcmul(h, half, k1))
    k3 = f(torch.addcmul(h, half, k2))
    k4 = f(torch.addcmul(h, k, k3))
    return torch.addcmul(h, k / 6.0, torch.add(k1 + k4, k2 + k3, alpha=2.0))


FIXED_STEP = {Solver.euler: euler, Solver.midpoint: midpoint, Solver.rk4: rk4}


def integrate_fixed(
    f: Field, h: torch.Tensor, dt: torch.Tensor, solver: Solver, steps: int
) -> torch.Tensor:
    """``h`` evolved over ``dt`` by ``steps`` equal steps of the fixed-step ``solver``."""
    step, k = FIXED_STEP[solver], dt / steps
    for _ in range(steps):
        h = step(f, h, k)
    return h


def checked_solver(solver: Solver | str, steps: int, owner: str, fixed_only: bool = True) -> Solver:
    """``solver`` as a :class:`Solver`, or a readable error: fewer than 1 step per interval,
    or (``fixed_only``) an adaptive solver for a model that integrates with fixed steps."""
    solver = Solver(solver)
    if fixed_only and solver not in FIXED_STEP:
        names = ", ".join(s.value for s in FIXED_STEP)
        raise ValueError(f"{owner} integrates with fixed steps ({names}), not {solver.value}")
    if steps < 1:
        raise ValueError(f"{owner}: steps must be at least 1, got {steps}")
    return solver


def per_sample_rms_max(error: torch.Tensor) -> torch.Tensor:
    """dopri5's error norm: the worst sample's RMS over its state."""
    return error.pow(2).mean(dim=-1).sqrt().amax()


class NeuralODE(nn.Module):
    """``dh/dt = f(h)`` with an MLP ``f``; ``forward(h, dt)`` returns ``h`` evolved by ``dt``."""

    def __init__(self, cfg: ODEConfig, size: int):
        super().__init__()
        self.solver = checked_solver(cfg.solver, cfg.steps, "ode", fixed_only=False)
        layers: list[nn.Module] = []
        width = size
        for _ in range(cfg.layers):
            layers += [nn.Linear(width, cfg.units), activation(cfg.activation)]
            width = cfg.units
        layers.append(nn.Linear(width, size))
        self.f = nn.Sequential(*layers)
        self.steps = cfg.steps
        self.rtol, self.atol = cfg.rtol, cfg.atol

    def forward(self, h: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """Evolve ``h [B,H]`` over the per-sample intervals ``dt [B,1]``."""
        if self.solver is Solver.dopri5:
            span = torch.tensor([0.0, 1.0], dtype=h.dtype, device=h.device)
            return odeint(
                lambda s, y: dt * self.f(y),
                h,
                span,
                rtol=self.rtol,
                atol=self.atol,
                method="dopri5",
                options={"norm": per_sample_rms_max},
            )[-1]
        return integrate_fixed(self.f, h, dt, self.solver, self.steps)
