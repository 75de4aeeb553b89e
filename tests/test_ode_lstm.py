"""ODE-LSTM: an exact LSTM at zero elapsed time; LSTM update, then ODE evolution, otherwise.
The TensorFlow variant: the reference cell's equations, coupling and initialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.ode_lstm import ODELSTMConfig, ODELSTMVariant
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


def build_tensorflow(steps: int = 4) -> nn.Module:
    torch.manual_seed(0)
    cfg = ODELSTMConfig(
        hidden=H, variant=ODELSTMVariant.tensorflow, ode=ODEConfig(solver=Solver.euler, steps=steps)
    )
    return cfg.build(SequenceIO(N_IN, 2)).double()


@torch.no_grad()
def test_tensorflow_variant_follows_the_reference_cell() -> None:
    """node_cell.ODELSTM, written out: the LSTM reads the previous ODE state s, its output u
    drives a leaky CT-RNN that moves s (not u) by 4 Euler steps; s is the output."""
    model = build_tensorflow()
    for p in model.parameters():  # away from the initial zeros and ones
        p.add_(0.3 * torch.randn_like(p))
    x, dt = data()
    lstm, ode = model.cell, model.ctrnn
    s = c = torch.zeros(B, H, dtype=torch.float64)
    expected = []
    for t in range(T):
        z = x[:, t] @ lstm.weight_ih.T + lstm.bias_ih + s @ lstm.weight_hh.T + lstm.bias_hh
        input_gate, forget_gate, candidate, output_gate = z.chunk(4, dim=1)
        c = torch.sigmoid(forget_gate) * c + torch.sigmoid(input_gate) * torch.tanh(candidate)
        u = torch.sigmoid(output_gate) * torch.tanh(c)
        k = dt[:, t : t + 1] / 4
        for _ in range(4):
            drive = ode.input_map.weight @ u.T + ode.input_map.bias[:, None]
            drive = drive.T + s @ ode.recurrent.weight.T
            s = s + k * (ode.scale * torch.tanh(drive) - s)
        expected.append(s)
    states = model.states(x, dt, torch.ones(B, T, dtype=torch.bool))
    torch.testing.assert_close(states, torch.stack(expected, dim=1), rtol=0, atol=1e-12)


@torch.no_grad()
def test_tensorflow_variant_starts_as_the_reference_cell() -> None:
    model = build_tensorflow()
    bias = model.cell.bias_ih + model.cell.bias_hh
    expected = torch.zeros(4 * H, dtype=torch.float64)
    expected[H : 2 * H] = 3.0  # sigmoid(fg + 3.0) on a zero-initialised bias
    assert torch.equal(bias, expected)
    assert not model.cell.bias_hh.requires_grad  # one trainable bias, as the TF cell
    w_hh = model.cell.weight_hh  # orthogonal [4H, H]: orthonormal columns
    torch.testing.assert_close(w_hh.T @ w_hh, torch.eye(H, dtype=torch.float64), atol=1e-6, rtol=0)
    # its ODE state is the output and starts at 0: without elapsed time nothing moves
    x, _ = data()
    zero = torch.zeros(B, T, dtype=torch.float64)
    assert model.states(x, zero, torch.ones(B, T, dtype=torch.bool)).abs().max() == 0


def test_tensorflow_variant_needs_a_fixed_step_solver() -> None:
    overrides = ["model=ode_lstm", "model.variant=tensorflow", "model.ode.solver=dopri5"]
    cfg = compose(overrides).model
    with pytest.raises(ValueError, match="integrates with fixed steps .* not dopri5"):
        cfg.build(SequenceIO(N_IN, 2))
