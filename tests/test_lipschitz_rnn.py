"""Lipschitz RNN: steps against the reference's equations, worked out here in numpy, and the
structure of its hidden matrices (symmetric and skew parts, the eigenvalue bound)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.lipschitz_rnn import LipschitzRNNConfig
from cfc_bench.models.solvers import Solver

B, T, N_IN, H = 2, 4, 3, 5


def build(**settings):
    torch.manual_seed(0)
    return LipschitzRNNConfig(hidden=H, **settings).build(SequenceIO(N_IN, 1)).double()


def reference_matrix(m: np.ndarray, beta: float, gamma: float) -> np.ndarray:
    return beta * (m - m.T) + (1 - beta) * (m + m.T) - gamma * np.eye(len(m))


@pytest.mark.parametrize("solver", ["euler", "midpoint"])
@torch.no_grad()
def test_steps_follow_the_reference_equations(solver: str) -> None:
    """h ← h + ε·f(h) (Euler) or h + ε·f(h + ε/2·f(h)) (RK2), f(h) = h A + tanh(h W + U x + b),
    row vectors as the reference, x = [x ; elapsed], from fixed weights."""
    model = build(solver=Solver[solver], eps=0.3)  # a large step, so that A and W matter
    rng = np.random.default_rng(4)
    b_free, c_free = rng.normal(0, 0.6, (H, H)), rng.normal(0, 0.6, (H, H))
    u, bias = rng.normal(0, 0.6, (H, N_IN + 1)), rng.normal(0, 0.6, H)
    for p, v in [(model.B, b_free), (model.C, c_free), (model.input_map.weight, u)]:
        p.copy_(torch.from_numpy(v))
    model.input_map.bias.copy_(torch.from_numpy(bias))
    A = reference_matrix(b_free, 0.7, 0.001)
    W = reference_matrix(c_free, 0.7, 0.001)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, N_IN, generator=g, dtype=torch.float64)
    dt = torch.rand(B, T, generator=g, dtype=torch.float64)
    h, eps, expected = np.zeros((B, H)), 0.3, []
    for t in range(T):
        drive = np.concatenate([x[:, t].numpy(), dt[:, t : t + 1].numpy()], axis=1) @ u.T + bias

        def f(state: np.ndarray, drive: np.ndarray = drive) -> np.ndarray:
            return state @ A + np.tanh(state @ W + drive)

        h = h + eps * (f(h) if solver == "euler" else f(h + eps / 2 * f(h)))
        expected.append(h)
    states = model.states(x, dt, torch.ones(B, T, dtype=torch.bool))
    np.testing.assert_allclose(states.numpy(), np.stack(expected, 1), atol=1e-12)


@torch.no_grad()
def test_hidden_matrices_split_into_the_stated_parts() -> None:
    """A = β(B − Bᵀ) + (1 − β)(B + Bᵀ) − γI: symmetric part (1 − β)(B + Bᵀ) − γI, skew part
    β(B − Bᵀ); the real part of every eigenvalue at most (1 − β)·λmax(B + Bᵀ) − γ."""
    model = build()
    A, W = model.matrices()
    Bm, Cm = model.B, model.C
    torch.testing.assert_close((A + A.T) / 2, 0.3 * (Bm + Bm.T) - 0.001 * torch.eye(H).double())
    torch.testing.assert_close((A - A.T) / 2, 0.7 * (Bm - Bm.T))
    torch.testing.assert_close((W - W.T) / 2, 0.7 * (Cm - Cm.T))
    bound = 0.3 * torch.linalg.eigvalsh(Bm + Bm.T).max() - 0.001
    assert torch.linalg.eigvals(A).real.max() <= bound + 1e-12


@torch.no_grad()
def test_full_skew_level_leaves_a_negative_definite_symmetric_part() -> None:
    """β = 1: A + Aᵀ = −2γI, so every eigenvalue of A has real part −γ (a damped rotation).
    At the reference's β = 0.7 the symmetric part is indefinite (checked at its init)."""
    A, _ = build(beta=1.0, gamma=0.01).matrices()
    torch.testing.assert_close(A + A.T, -0.02 * torch.eye(H).double())
    torch.testing.assert_close(
        torch.linalg.eigvals(A).real, torch.full((H,), -0.01, dtype=torch.float64)
    )
    torch.manual_seed(0)
    wide = LipschitzRNNConfig().build(SequenceIO(N_IN, 1)).double()
    A, _ = wide.matrices()
    assert torch.linalg.eigvalsh(A + A.T).max() > 0


@torch.no_grad()
def test_free_matrices_start_with_the_reference_spread() -> None:
    """B, C ~ N(0, (init_std/hidden)²), as the reference's gaussian_init_."""
    torch.manual_seed(0)
    model = LipschitzRNNConfig(hidden=200, init_std=6.0).build(SequenceIO(N_IN, 1))
    for m in (model.B, model.C):
        assert m.std().item() == pytest.approx(6.0 / 200, rel=0.02)
        assert abs(m.mean().item()) < 1e-3


def test_bad_settings_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="lipschitz_rnn integrates with fixed steps"):
        compose(["model=lipschitz_rnn", "model.solver=dopri5"]).model.build(SequenceIO(N_IN, 1))
    with pytest.raises(ValueError, match="model.beta=1.5 is out of range"):
        compose(["model=lipschitz_rnn", "model.beta=1.5"]).model.build(SequenceIO(N_IN, 1))
