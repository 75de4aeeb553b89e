"""coRNN: steps against the reference cell's equations, worked out here in numpy, and the
oscillators' equilibrium under a constant force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.cornn import CoRNNConfig

B, T, N_IN, H = 2, 4, 3, 5


def build(**settings: float):
    torch.manual_seed(0)
    return CoRNNConfig(hidden=H, **settings).build(SequenceIO(N_IN, 1)).double()


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, N_IN, generator=g, dtype=torch.float64)
    dt = torch.rand(B, T, generator=g, dtype=torch.float64) + 0.1
    return x, dt, torch.ones(B, T, dtype=torch.bool)


@pytest.mark.parametrize("settings", [{}, {"dt": 0.042, "gamma": 2.7, "epsilon": 4.7}])
@torch.no_grad()
def test_steps_follow_the_reference_cell(settings: dict) -> None:
    """coRNNCell: z += Δt·(tanh(i2h([u ; z ; y])) − γ·y − ε·z), then y += Δt·z (the new z),
    with u = [x ; elapsed], from fixed weights."""
    model = build(**settings)
    rng = np.random.default_rng(3)
    weight = rng.normal(0.0, 0.5, (H, N_IN + 1 + 2 * H))
    bias = rng.normal(0.0, 0.5, H)
    model.i2h.weight.copy_(torch.from_numpy(weight))
    model.i2h.bias.copy_(torch.from_numpy(bias))
    step, gamma, eps = (model.dt, model.gamma, model.epsilon)
    assert (step, gamma, eps) == (
        settings.get("dt", 0.1),
        settings.get("gamma", 0.2),
        settings.get("epsilon", 6.4),
    )
    x, dt, mask = data()
    y, z = np.zeros((B, H)), np.zeros((B, H))
    expected = []
    for t in range(T):
        u = np.concatenate([x[:, t].numpy(), dt[:, t : t + 1].numpy()], axis=1)
        force = np.tanh(np.concatenate([u, z, y], axis=1) @ weight.T + bias)
        z = z + step * (force - gamma * y - eps * z)
        y = y + step * z
        expected.append(y)
    np.testing.assert_allclose(model.states(x, dt, mask).numpy(), np.stack(expected, 1), atol=1e-12)


@torch.no_grad()
def test_a_constant_force_settles_at_its_equilibrium() -> None:
    """No coupling (W = 𝒲 = 0) and a constant drive c: y'' = tanh(c) − γ·y − ε·y' settles at
    y = tanh(c)/γ, the fixed point of the step (γ = 1, ε = 2: critically damped, fast)."""
    model = build(gamma=1.0, epsilon=2.0)
    model.i2h.weight.zero_()
    model.i2h.bias.copy_(torch.linspace(-1.0, 1.0, H))
    steps = 400
    x, dt = torch.zeros(1, steps, N_IN, dtype=torch.float64), torch.zeros(1, steps)
    y = model.states(x, dt.double(), torch.ones(1, steps, dtype=torch.bool))
    target = torch.tanh(model.i2h.bias) / model.gamma
    torch.testing.assert_close(y[0, -1], target, atol=1e-9, rtol=0)
    assert (y[0, 10] - target).abs().max() > 0.1  # it got there by moving


def test_bad_settings_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="model.dt=0.0 is out of range: model.dt must be > 0"):
        compose(["model=cornn", "model.dt=0"]).model.build(SequenceIO(N_IN, 1))
