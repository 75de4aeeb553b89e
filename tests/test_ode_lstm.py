"""ODE-LSTM: an exact LSTM at zero elapsed time; LSTM update, then ODE evolution, otherwise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.ode_lstm import ODELSTMConfig
from cfc_bench.models.solvers import ODEConfig, Solver

B, T, N_IN, H = 3, 7, 5, 8


def build(solver: str) -> nn.Module:
    torch.manual_seed(0)
    cfg = ODELSTMConfig(hidden=H, ode=ODEConfig(solver=Solver[solver]))
    return cfg.build(SequenceIO(N_IN, 2)).double()


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, N_IN, generator=g, dtype=torch.float64)
    dt = torch.rand(B, T, generator=g, dtype=torch.float64) * 2
    return x, dt


@pytest.mark.parametrize("solver", ["euler", "rk4", "dopri5"])
@torch.no_grad()
def test_zero_elapsed_time_is_exactly_a_plain_lstm(solver: str) -> None:
    model = build(solver)
    x, _ = data()
    zero = torch.zeros(B, T, dtype=torch.float64)
    states = model.states(x, zero, torch.ones(B, T, dtype=torch.bool))
    # torch's own LSTM layer with the cell's weights
    lstm = nn.LSTM(N_IN, H, batch_first=True).double()
    lstm.load_state_dict({f"{k}_l0": v for k, v in model.cell.state_dict().items()})
    torch.testing.assert_close(states, lstm(x)[0], rtol=0, atol=1e-12)
    # and the ODE really is there: with elapsed time the states differ
    x, dt = data()
    moved = model.states(x, dt, torch.ones(B, T, dtype=torch.bool))
    assert (moved - lstm(x)[0]).abs().max() > 1e-3


@pytest.mark.parametrize("solver", ["euler", "rk4"])
@torch.no_grad()
def test_lstm_update_comes_first_then_the_output_state_evolves(solver: str) -> None:
    model = build(solver)
    x, dt = data()
    h = c = torch.zeros(B, H, dtype=torch.float64)
    expected = []
    for t in range(T):
        h, c = model.cell(x[:, t], (h, c))  # torch's own LSTMCell
        h = model.ode(h, dt[:, t : t + 1])  # only h evolves; c is carried unchanged
        expected.append(h)
    states = model.states(x, dt, torch.ones(B, T, dtype=torch.bool))
    torch.testing.assert_close(states, torch.stack(expected, dim=1), rtol=0, atol=1e-12)


def test_default_solver_is_explicit_euler_with_three_steps() -> None:
    for cfg in (compose(["model=ode_lstm"]).model, ODELSTMConfig()):
        model = cfg.build(SequenceIO(N_IN, 2))
        assert (model.ode.solver, model.ode.steps) == (Solver.euler, 3)
