"""ODE solvers against the analytic solution of a linear ODE, and the ODE-RNN recurrence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.ode_rnn import ODERNNConfig
from cfc_bench.models.solvers import NeuralODE, ODEConfig, Solver

# A damped, rotating linear field dh/dt = A h (eigenvalues with real parts in [-0.9, -0.1]).
A = torch.tensor(
    [
        [-0.5, 1.0, 0.0, 0.2],
        [-1.0, -0.3, 0.4, 0.0],
        [0.1, 0.0, -0.8, 0.7],
        [0.0, -0.3, -0.7, -0.1],
    ],
    dtype=torch.float64,
)


def linear_ode(solver: Solver, steps: int = 3, rtol: float = 1e-3, atol: float = 1e-4):
    """A NeuralODE whose f is exactly h ↦ A h (no hidden layer, zero bias)."""
    ode = NeuralODE(ODEConfig(layers=0, solver=solver, steps=steps, rtol=rtol, atol=atol), 4)
    ode = ode.double()
    with torch.no_grad():
        ode.f[0].weight.copy_(A)
        ode.f[0].bias.zero_()
    return ode


def exact(h0: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """h(dt) = expm(dt·A) h0, per sample."""
    return torch.stack(
        [torch.linalg.matrix_exp(d * A) @ h for d, h in zip(dt.flatten(), h0, strict=True)]
    )


def start(n: int) -> torch.Tensor:
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@torch.no_grad()
def test_rk4_with_the_papers_three_steps_matches_the_matrix_exponential() -> None:
    h0, dt = start(3), torch.tensor([[0.1], [0.5], [1.0]], dtype=torch.float64)
    err = (linear_ode(Solver.rk4, steps=3)(h0, dt) - exact(h0, dt)).abs().amax(dim=1)
    # RK4's global error ~ C·(dt/3)^4: 3e-9 at dt=0.1, 1e-4 at dt=1 for this field.
    assert err.max() < 2e-4
    assert err[0] < 1e-8
    # over a long interval 3 steps are coarse (error ~1e-2); 64 steps bring it below 1e-7
    h0, dt = start(1), torch.tensor([[2.5]], dtype=torch.float64)
    assert (linear_ode(Solver.rk4, steps=64)(h0, dt) - exact(h0, dt)).abs().max() < 1e-7


@pytest.mark.parametrize("solver, order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
@torch.no_grad()
def test_fixed_step_error_shrinks_at_the_methods_order(solver: str, order: int) -> None:
    h0, dt = start(4), torch.tensor([[1.0], [0.7], [-0.8], [1.5]], dtype=torch.float64)
    target = exact(h0, dt)
    steps = np.array([4, 8, 16, 32, 64])
    errors = [
        (linear_ode(Solver[solver], int(n))(h0, dt) - target).abs().max().item() for n in steps
    ]
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert slope == pytest.approx(-order, abs=0.15)


@pytest.mark.parametrize("tol", [1e-4, 1e-8])
@torch.no_grad()
def test_dopri5_is_right_for_every_sample_of_a_batch_with_different_elapsed_times(
    tol: float,
) -> None:
    h0 = start(6)
    dt = torch.tensor([[0.0], [0.01], [0.3], [1.0], [2.5], [-1.2]], dtype=torch.float64)
    out = linear_ode(Solver.dopri5, rtol=tol, atol=tol)(h0, dt)
    target = exact(h0, dt)
    # global error stays within a small multiple of the per-step tolerance, sample by sample
    assert ((out - target).abs() / (tol + tol * target.abs())).max() < 10
    torch.testing.assert_close(out[0], h0[0], rtol=0, atol=1e-14)  # dt=0: unchanged


@torch.no_grad()
def test_dopri5_tolerance_holds_for_one_moving_sample_among_many_resting_ones() -> None:
    # With torchdiffeq's default norm (RMS over the whole batch) the one sample's error would
    # be diluted by the 63 others (it ends ~6x over the tolerance here); the per-sample norm's
    # ends ~0.7x.
    h0, dt = start(64), torch.zeros(64, 1, dtype=torch.float64)
    dt[5] = 2.5
    out = linear_ode(Solver.dopri5, rtol=1e-6, atol=1e-6)(h0, dt)
    target = exact(h0[5:6], dt[5:6])[0]
    assert ((out[5] - target).abs() / (1e-6 + 1e-6 * target.abs())).max() < 3
    torch.testing.assert_close(out[6:], h0[6:], rtol=0, atol=1e-14)  # dense-output roundoff


@pytest.mark.parametrize("solver", ["euler", "rk4", "dopri5"])
@torch.no_grad()
def test_ode_rnn_evolves_over_dt_then_applies_the_gru(solver: str) -> None:
    torch.manual_seed(0)
    cfg = ODERNNConfig(hidden=8, ode=ODEConfig(layers=2, solver=Solver[solver]))
    model = cfg.build(SequenceIO(5, 2)).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 6, 5, generator=g, dtype=torch.float64)
    dt = torch.rand(3, 6, generator=g, dtype=torch.float64) * 2
    dt[1, 2] = 0.0
    h = torch.zeros(3, 8, dtype=torch.float64)
    expected = []
    for t in range(6):
        h = model.cell(x[:, t], model.ode(h, dt[:, t : t + 1]))  # torch's own GRUCell
        expected.append(h)
    states = model.states(x, dt, torch.ones(3, 6, dtype=torch.bool))
    torch.testing.assert_close(states, torch.stack(expected, dim=1), rtol=0, atol=1e-12)


def test_ode_rnn_defaults_are_the_papers_rk4_with_three_steps() -> None:
    for cfg in (compose(["model=ode_rnn"]).model, ODERNNConfig()):
        model = cfg.build(SequenceIO(5, 2))
        assert (model.ode.solver, model.ode.steps) == (Solver.rk4, 3)
    with pytest.raises(Exception, match="solver"):
        compose(["model=ode_rnn", "model.ode.solver=rk5"])


def test_a_bad_step_count_is_refused() -> None:
    with pytest.raises(ValueError, match="ode: steps must be at least 1, got 0"):
        NeuralODE(ODEConfig(steps=0), 4)
