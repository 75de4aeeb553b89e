"""CT-RNN: exact against the closed form of its linear case, convergence at each solver's order."""

from __future__ import annotations

import math

import pytest
import torch

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.ct_rnn import CTRNNConfig
from cfc_bench.models.solvers import Solver

B, T, N_IN, H = 3, 6, 4, 5

# One step of size z = tau·k of each method on dh/dt = a − tau·h multiplies h − a/tau by:
GROWTH = {
    "euler": lambda z: 1 - z,
    "midpoint": lambda z: 1 - z + z**2 / 2,
    "rk4": lambda z: 1 - z + z**2 / 2 - z**3 / 6 + z**4 / 24,
}


def build(solver: str = "rk4", steps: int = 3, tau: float = 1.0):
    torch.manual_seed(0)
    cfg = CTRNNConfig(hidden=H, tau=tau, solver=Solver[solver], steps=steps)
    return cfg.build(SequenceIO(N_IN, 2)).double()


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, N_IN, generator=g, dtype=torch.float64)
    dt = torch.rand(B, T, generator=g, dtype=torch.float64) * 1.5 + 0.1  # differs per sample
    return x, dt, torch.ones(B, T, dtype=torch.bool)


@pytest.mark.parametrize("tau", [1.0, 0.7, 0.0])
@pytest.mark.parametrize("solver", ["euler", "midpoint", "rk4"])
@torch.no_grad()
def test_linear_case_matches_its_closed_form(solver: str, tau: float) -> None:
    """U = 0: the drive a = scale·tanh(W x + b) is constant over an interval, so the state
    relaxes towards a/tau (tau > 0), or grows by a·dt (tau = 0), by the method's exact factor."""
    steps = 3
    model = build(solver, steps, tau)
    model.field.recurrent.weight.zero_()
    model.field.scale.copy_(torch.linspace(0.5, 2.0, H))
    x, dt, mask = data()
    h = torch.zeros(B, H, dtype=torch.float64)
    expected, exact = [], []
    h_exact = h.clone()
    for t in range(T):
        a = model.field.scale * torch.tanh(model.field.input_map(x[:, t]))
        d = dt[:, t : t + 1]
        if tau:
            h = a / tau + (h - a / tau) * GROWTH[solver](tau * d / steps) ** steps
            h_exact = a / tau + (h_exact - a / tau) * torch.exp(-tau * d)
        else:  # a constant field: every method is exact
            h, h_exact = h + a * d, h_exact + a * d
        expected.append(h)
        exact.append(h_exact)
    states = model.states(x, dt, mask)
    torch.testing.assert_close(states, torch.stack(expected, 1), rtol=0, atol=1e-12)
    # and the method's error against the exponential is of its order in k = dt/steps
    order = {"euler": 1, "midpoint": 2, "rk4": 4}[solver]
    bound = 2 * (tau * dt.max().item() / steps) ** (order + 1) * T * steps + 1e-12
    assert (states - torch.stack(exact, 1)).abs().max().item() <= bound


@pytest.mark.parametrize("solver,order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
@torch.no_grad()
def test_error_shrinks_at_the_methods_order(solver: str, order: int) -> None:
    """Nonlinear case (random U): halving the step divides the error by about 2^order."""
    x, dt, mask = data()
    fine = build("rk4", 256)
    reference = fine.states(x, dt, mask)
    errors = []
    for steps in (8, 16, 32):
        model = build(solver, steps)
        model.load_state_dict(fine.state_dict())
        errors.append((model.states(x, dt, mask) - reference).abs().max().item())
    for coarse, finer in zip(errors, errors[1:], strict=False):
        assert math.log2(coarse / finer) == pytest.approx(order, abs=0.35)


@torch.no_grad()
def test_starts_as_the_tensorflow_cell() -> None:
    model = build()
    f = model.field
    assert torch.equal(f.scale, torch.ones(H)) and torch.equal(f.input_map.bias, torch.zeros(H))
    torch.testing.assert_close(
        f.recurrent.weight @ f.recurrent.weight.T,
        torch.eye(H, dtype=torch.float64),
        atol=1e-6,  # drawn in float32
        rtol=0,
    )
    assert f.input_map.weight.abs().max() <= math.sqrt(6 / (N_IN + H))  # glorot-uniform bound


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.solver=dopri5", "ct_rnn integrates with fixed steps (euler, midpoint, rk4)"),
        ("model.steps=0", "model.steps=0 is out of range: model.steps must be >= 1"),
        ("model.tau=-1", "tau must be 0 (no leak) or positive, got -1"),
    ],
)
def test_bad_settings_say_what_is_wrong(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compose(["model=ct_rnn", override]).model.build(SequenceIO(N_IN, 2))
