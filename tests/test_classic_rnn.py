"""latent_ode's classic RNNs: single steps against the reference's equations, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.classic_rnn import ClassicRNN, ClassicRNNConfig
from cfc_bench.run.trainer import make_optimizer

H, D = 2, 2
NAN = math.nan
# Four steps of two features: values (what an unobserved slot holds must not matter: NaN and
# a forward-filled 9), observed mask, elapsed time. Nothing is observed at step 2.
VALUES = [[1.0, NAN], [9.0, -2.0], [9.0, 9.0], [0.5, 0.25]]
OBSERVED = [[1, 0], [0, 1], [0, 0], [1, 1]]
DT = [0.0, 2.0, 1.0, 4.0]
# δ (time since each feature's last observation) and its last value, worked out by hand
DELTA = [[0.0, 0.0], [2.0, 2.0], [3.0, 1.0], [7.0, 5.0]]
LAST = [[1.0, 0.0], [1.0, -2.0], [1.0, -2.0], [0.5, 0.25]]
SEEN_SUM = [[1.0, 0.0], [1.0, -2.0], [1.0, -2.0], [1.5, -1.75]]  # Σ_{s≤t} m·v


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def gru(u: np.ndarray, h: np.ndarray, cell: nn.GRUCell) -> np.ndarray:
    """torch's GRUCell (and the reference's gru_exp_decay_cell after its decay), from its
    documented equations: gates r, z, n in that order."""
    w_ih, w_hh = cell.weight_ih.detach().numpy(), cell.weight_hh.detach().numpy()
    b_ih, b_hh = cell.bias_ih.detach().numpy(), cell.bias_hh.detach().numpy()
    gi, gh = w_ih @ u + b_ih, w_hh @ h + b_hh
    r = sigmoid(gi[:H] + gh[:H])
    z = sigmoid(gi[H : 2 * H] + gh[H : 2 * H])
    n = np.tanh(gi[2 * H :] + r * gh[2 * H :])
    return (1 - z) * n + z * h


def build(values_with_mask: bool = True, **fields) -> ClassicRNN:
    torch.manual_seed(0)
    n_in = 2 * D if values_with_mask else D
    model = ClassicRNNConfig(hidden=H, **fields).build(SequenceIO(n_in, 3, values_with_mask))
    model = model.double().eval()
    with torch.no_grad():  # small fixed weights, so that no gate saturates
        for p in model.cell.parameters():
            p.copy_(0.1 * torch.arange(p.numel(), dtype=torch.float64).reshape(p.shape).cos())
    return model


def sequence() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    values = torch.tensor([VALUES], dtype=torch.float64)
    observed = torch.tensor([OBSERVED], dtype=torch.float64)
    x = torch.cat([values, observed], dim=-1)
    return x, torch.tensor([DT], dtype=torch.float64), torch.ones(1, 4, dtype=torch.bool)


def run(model: ClassicRNN, inputs: list[np.ndarray], decays: list[float]) -> np.ndarray:
    """The reference loop: decay the state, GRU step, keep the old state where nothing is
    observed (from the second step on)."""
    h, out = np.zeros(H), []
    for t, (u, g) in enumerate(zip(inputs, decays, strict=True)):
        new = gru(u, g * h, model.cell)
        h = h if t > 0 and not any(OBSERVED[t]) else new
        out.append(h)
    return np.stack(out)


def seen(t: int) -> np.ndarray:
    """m ⊙ v: unobserved values read as 0."""
    return np.array([VALUES[t][k] if OBSERVED[t][k] else 0.0 for k in range(D)])


@torch.no_grad()
def test_rnn_delta_t_reads_values_mask_and_scaled_elapsed_time() -> None:
    model = build(time_scale=0.5)
    inputs = [np.concatenate([seen(t), OBSERVED[t], [0.5 * DT[t]]]) for t in range(4)]
    expected = run(model, inputs, [1.0] * 4)
    states = model.states(*sequence())[0].numpy()
    np.testing.assert_allclose(states, expected, rtol=0, atol=1e-14)
    assert np.array_equal(states[2], states[1])  # nothing observed at step 2: state held


def imputed(w: list[float], b: list[float]) -> list[np.ndarray]:
    """x̂ by hand: observed values kept, the others γ·last + (1 − γ)·mean of the steps so far."""
    rows = []
    for t in range(4):
        row = []
        for k in range(D):
            if OBSERVED[t][k]:
                row.append(VALUES[t][k])
                continue
            gamma = math.exp(-min(max(w[k] * DELTA[t][k] + b[k], 0.0), 1000.0))
            row.append(gamma * LAST[t][k] + (1 - gamma) * SEEN_SUM[t][k] / (t + 1))
        rows.append(np.array(row))
    return rows


def set_input_decay(model: ClassicRNN, w: list[float], b: list[float]) -> None:
    with torch.no_grad():
        model.input_decay_weight.copy_(torch.tensor(w))
        model.input_decay_bias.copy_(torch.tensor(b))


@torch.no_grad()
def test_rnn_impute_weighs_the_last_value_and_the_mean_by_the_time_since_observed() -> None:
    w, b = [1.0, 0.5], [-0.5, 0.0]
    model = build(input_decay=True)
    set_input_decay(model, w, b)
    x_hat = imputed(w, b)
    # spot checks of the hand computation: feature 0 at step 1 (δ = 2), feature 1 at step 0
    assert x_hat[1][0] == pytest.approx(math.exp(-1.5) + (1 - math.exp(-1.5)) * 0.5)
    assert x_hat[0][1] == 0.0  # δ = 0: γ = 1, and the last value before any is 0
    inputs, _, _ = model.step_inputs(*sequence())
    np.testing.assert_allclose(inputs[0, :, :D].numpy(), np.stack(x_hat), rtol=0, atol=1e-15)
    gru_inputs = [np.concatenate([x_hat[t], OBSERVED[t], [DT[t]]]) for t in range(4)]
    expected = run(model, gru_inputs, [1.0] * 4)
    np.testing.assert_allclose(model.states(*sequence())[0].numpy(), expected, atol=1e-14)


def set_state_decay(model: ClassicRNN, w: list[float], b: float) -> None:
    with torch.no_grad():
        model.state_decay.weight.copy_(torch.tensor([w]))
        model.state_decay.bias.fill_(b)


def state_decays(w: list[float], b: float) -> list[float]:
    """exp(−clamp(w·δ + b, 0, 1000)): 1, e^−0.9, (held), e^−3 for these δ."""
    return [math.exp(-min(max(np.dot(w, DELTA[t]) + b, 0.0), 1000.0)) for t in range(4)]


@torch.no_grad()
def test_rnn_expdecay_decays_the_state_by_the_time_since_each_feature_was_observed() -> None:
    w, b = [0.3, 0.2], -0.1
    model = build(cell="expdecay")
    set_state_decay(model, w, b)
    decays = state_decays(w, b)
    assert decays[1] == pytest.approx(math.exp(-0.9)) and decays[3] == pytest.approx(math.exp(-3))
    inputs = [np.concatenate([seen(t), OBSERVED[t]]) for t in range(4)]  # no Δt input
    expected = run(model, inputs, decays)
    np.testing.assert_allclose(model.states(*sequence())[0].numpy(), expected, atol=1e-14)


@torch.no_grad()
def test_gru_d_latent_combines_input_imputation_and_state_decay() -> None:
    wx, bx, wh, bh = [1.0, 0.5], [-0.5, 0.0], [0.3, 0.2], -0.1
    model = build(cell="expdecay", input_decay=True)
    set_input_decay(model, wx, bx)
    set_state_decay(model, wh, bh)
    x_hat = imputed(wx, bx)
    inputs = [np.concatenate([x_hat[t], OBSERVED[t]]) for t in range(4)]
    expected = run(model, inputs, state_decays(wh, bh))
    np.testing.assert_allclose(model.states(*sequence())[0].numpy(), expected, atol=1e-14)


def random_sequence(steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    values = torch.randn(3, steps, D, generator=g, dtype=torch.float64)
    observed = torch.rand(3, steps, D, generator=g) < 0.5
    observed[:, 0] = True
    x = torch.cat([values, observed.double()], dim=-1)
    dt = torch.rand(3, steps, generator=g, dtype=torch.float64)
    return x, dt, torch.ones(3, steps, dtype=torch.bool)


@torch.no_grad()
def test_expdecay_state_vanishes_after_a_long_gap() -> None:
    model = build(cell="expdecay")
    set_state_decay(model, [0.5, 0.5], 0.0)
    x, dt, mask = random_sequence(6)
    dt[:, 4] = 1e4
    states = model.states(x, dt, mask)
    inputs, gamma_h, _ = model.step_inputs(x, dt, mask)
    assert gamma_h[:, 4].max() < 1e-300 and states[:, 3].abs().min() > 0
    fresh = model.cell(inputs[:, 4], torch.zeros(3, H, dtype=torch.float64))
    updated = x[:, 4, D:].sum(-1) > 0  # where something is observed after the gap
    torch.testing.assert_close(states[updated, 4], fresh[updated], rtol=0, atol=1e-15)


@torch.no_grad()
def test_impute_with_no_elapsed_time_carries_the_last_value() -> None:
    model = build(input_decay=True)
    set_input_decay(model, [0.7, 0.3], [-0.2, 0.0])  # no decay at δ = 0
    x, dt, mask = random_sequence(7)
    inputs, _, _ = model.step_inputs(x, torch.zeros_like(dt), mask)
    values, observed = x[..., :D], x[..., D:] > 0.5
    last = torch.zeros(3, D, dtype=torch.float64)
    for t in range(7):
        last = torch.where(observed[:, t], values[:, t], last)
        torch.testing.assert_close(inputs[:, t, :D], last, rtol=0, atol=0)


@torch.no_grad()
def test_plain_inputs_count_as_observed_everywhere() -> None:
    model = build(values_with_mask=False)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 5, D, generator=g, dtype=torch.float64)
    dt = torch.rand(2, 5, generator=g, dtype=torch.float64)
    h, expected = np.zeros((2, H)), []
    for t in range(5):
        u = torch.cat([x[:, t], dt[:, t, None]], dim=-1).numpy()  # no mask half
        h = np.stack([gru(u[i], h[i], model.cell) for i in range(2)])
        expected.append(h)
    states = model.states(x, dt, torch.ones(2, 5, dtype=torch.bool)).numpy()
    np.testing.assert_allclose(states, np.stack(expected, axis=1), rtol=0, atol=1e-14)


def test_classifiers_of_the_reference() -> None:
    torch.manual_seed(0)
    mlp = ClassicRNNConfig(hidden=20).build(SequenceIO(8, 2, True)).readout
    shapes = [tuple(m.weight.shape) for m in mlp if isinstance(m, nn.Linear)]
    assert shapes == [(300, 20), (300, 300), (2, 300)]
    assert [type(m) for m in mlp][1::2] == [nn.ReLU, nn.ReLU]
    assert abs(mlp[2].weight.std().item() - 0.1) < 0.002  # N(0, 0.1)
    assert all(not m.bias.any() for m in mlp if isinstance(m, nn.Linear))
    linear = ClassicRNNConfig(hidden=15, classifier="linear").build(SequenceIO(8, 7, True))
    assert isinstance(linear.readout, nn.Linear) and not linear.readout.bias.any()


def test_an_odd_input_with_a_mask_half_is_refused() -> None:
    with pytest.raises(ValueError, match="odd"):
        ClassicRNNConfig().build(SequenceIO(5, 2, True))


def test_model_entries_and_the_adamax_optimiser() -> None:
    cfg = compose(["experiment=physionet_gru_d_latent"])
    assert (cfg.model.cell.value, cfg.model.input_decay) == ("expdecay", True)
    optimizer = make_optimizer(cfg, [nn.Parameter(torch.zeros(1))])
    assert isinstance(optimizer, torch.optim.Adamax) and optimizer.defaults["lr"] == 0.01


def test_reconstruction_term_of_the_reference_by_hand() -> None:
    model = build(decoder_units=3).train()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.copy_(0.2 * torch.arange(p.numel(), dtype=torch.float64).reshape(p.shape).sin())
    x, dt, mask = sequence()
    states = model.states(x, dt, mask)[0].detach().numpy()
    w1, b1, w2, b2 = (p.detach().numpy() for p in model.decoder.parameters())
    log_density = []  # per feature: the mean over its observed steps
    for k in range(D):
        points = []
        for t in range(4):
            if not OBSERVED[t][k]:
                continue
            mu = VALUES[t][k] if t == 0 else (w2 @ np.tanh(w1 @ states[t - 1] + b1) + b2)[k]
            f64 = {"dtype": torch.float64}
            normal = torch.distributions.Normal(torch.tensor(mu, **f64), torch.tensor(0.01, **f64))
            points.append(normal.log_prob(torch.tensor(VALUES[t][k], **f64)).item())
        log_density.append(np.mean(points))
    expected = -np.mean(log_density) / 100  # the cross-entropy keeps weight 1, not 100
    assert model.auxiliary_loss().item() == pytest.approx(expected, rel=1e-12)
    model.eval()
    model.states(x, dt, mask)
    assert model.auxiliary_loss() is None  # evaluation adds nothing
    assert build().train().auxiliary_loss() is None  # no decoder, no term
