"""GRU-D: time since last observation, input and state decay, and the empirical mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cfc_bench.models.base import SequenceIO
from cfc_bench.models.gru_d import GRUD, GRUDConfig, GRUDVariant

H = 6


def build(n_features: int, values_with_mask: bool = True) -> GRUD:
    torch.manual_seed(0)
    io = SequenceIO(2 * n_features if values_with_mask else n_features, 2, values_with_mask)
    return GRUDConfig(hidden=H).build(io).double().eval()


def set_mean(model: GRUD, mean: list[float]) -> None:
    model.observed_sum.copy_(torch.tensor(mean, dtype=torch.float64) * 4)
    model.observed_count.fill_(4.0)


def paired(values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """x = [values ; observed-mask], as PhysioNet gives it."""
    return torch.cat([values, observed.to(values.dtype)], dim=-1)


@torch.no_grad()
def test_time_since_last_observation_and_input_decay_by_hand() -> None:
    model = build(2)
    set_mean(model, [0.5, -0.25])
    model.input_decay_weight.fill_(1.0)  # γx = exp(−δ)
    model.input_decay_bias.zero_()
    model.hidden_decay.weight.zero_()
    model.hidden_decay.weight[0, 0] = model.hidden_decay.weight[1, 1] = 1.0  # γh_k = exp(−δ_k)
    model.hidden_decay.bias.zero_()
    dt = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    observed = torch.tensor([[[1, 0], [0, 1], [0, 0], [1, 0]]], dtype=torch.bool)
    # unobserved entries hold NaN: the model must never read them
    nan = math.nan
    values = torch.tensor([[[2.0, nan], [nan, 3.0], [nan, nan], [-1.0, nan]]], dtype=torch.float64)
    x_hat, gamma_h = model.decayed_inputs(paired(values, observed), dt, torch.ones(1, 4).bool())

    delta = torch.tensor([[1.0, 1.0], [2.0, 3.0], [5.0, 3.0], [9.0, 7.0]], dtype=torch.float64)
    torch.testing.assert_close(-gamma_h[0, :, :2].log(), delta, rtol=1e-12, atol=0)

    def decayed(last: float, mean: float, d: float) -> float:
        return math.exp(-d) * last + (1 - math.exp(-d)) * mean

    expected = torch.tensor(
        [
            [2.0, -0.25],  # feature 1 not yet observed: its mean
            [decayed(2.0, 0.5, 2.0), 3.0],
            [decayed(2.0, 0.5, 5.0), decayed(3.0, -0.25, 3.0)],
            [-1.0, decayed(3.0, -0.25, 7.0)],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(x_hat[0, :, :2], expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(x_hat[0, :, 2:], observed[0].double())  # the mask is fed too


def random_sequence(n_features: int, steps: int, batch: int = 3):
    g = torch.Generator().manual_seed(2)
    values = torch.randn(batch, steps, n_features, generator=g, dtype=torch.float64)
    observed = torch.rand(batch, steps, n_features, generator=g) < 0.4
    observed[:, 0, 0] = True
    return values, observed


@torch.no_grad()
def test_zero_elapsed_time_decays_nothing() -> None:
    model = build(3)
    set_mean(model, [0.3, -0.2, 0.1])
    # decay happens only where w·δ + b > 0: with δ = 0 and non-positive biases, nowhere
    model.input_decay_bias.copy_(-model.input_decay_bias.abs())
    model.hidden_decay.bias.copy_(-model.hidden_decay.bias.abs())
    values, observed = random_sequence(3, steps=8)
    x, dt = paired(values, observed), torch.zeros(3, 8, dtype=torch.float64)
    valid = torch.ones(3, 8, dtype=torch.bool)
    x_hat, gamma_h = model.decayed_inputs(x, dt, valid)
    assert torch.equal(gamma_h, torch.ones_like(gamma_h))
    # the input is the last observation, forward-filled (the mean before the first one)
    last = model.x_mean.expand(3, 3).clone()
    h = torch.zeros(3, H, dtype=torch.float64)
    expected = []
    for t in range(8):
        last = torch.where(observed[:, t], values[:, t], last)
        torch.testing.assert_close(x_hat[:, t, :3], last, rtol=0, atol=1e-15)
        h = model.cell(torch.cat([last, observed[:, t].double()], dim=-1), h)  # undecayed h
        expected.append(h)
    torch.testing.assert_close(
        model.states(x, dt, valid), torch.stack(expected, 1), rtol=0, atol=1e-12
    )


@torch.no_grad()
def test_long_elapsed_time_imputes_the_mean_and_forgets_the_state() -> None:
    model = build(3)
    set_mean(model, [0.3, -0.2, 0.1])
    model.input_decay_weight.copy_(model.input_decay_weight.abs() + 0.1)  # decaying weights
    model.hidden_decay.weight.copy_(model.hidden_decay.weight.abs() + 0.1)
    values, observed = random_sequence(3, steps=6)
    observed[:, 4] = False  # nothing observed at the step after the long gap
    dt = torch.full((3, 6), 0.5, dtype=torch.float64)
    dt[:, 4] = 1e3
    x, valid = paired(values, observed), torch.ones(3, 6, dtype=torch.bool)
    x_hat, gamma_h = model.decayed_inputs(x, dt, valid)
    torch.testing.assert_close(x_hat[:, 4, :3], model.x_mean.expand(3, 3), rtol=0, atol=1e-12)
    assert gamma_h[:, 4].max() < 1e-12
    states = model.states(x, dt, valid)
    assert states[:, 3].abs().min() > 0  # a state was there to forget
    # the state after the gap is the GRU's update from a zero state
    fresh = model.cell(x_hat[:, 4], torch.zeros(3, H, dtype=torch.float64))
    torch.testing.assert_close(states[:, 4], fresh, rtol=0, atol=1e-12)
    # a short gap, by contrast, keeps most of the state
    assert (states[:, 2] - model.cell(x_hat[:, 2], torch.zeros(3, H).double())).abs().max() > 0.01


@torch.no_grad()
def test_without_a_mask_every_feature_is_observed_and_only_the_state_decays() -> None:
    model = build(4, values_with_mask=False)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    dt = torch.rand(2, 5, generator=g, dtype=torch.float64) * 3
    h = torch.zeros(2, H, dtype=torch.float64)
    expected = []
    for t in range(5):
        # every feature was observed one step before, so δ = dt for all of them
        gamma = torch.exp(-torch.relu(model.hidden_decay(dt[:, t, None].expand(2, 4))))
        h = model.cell(x[:, t], gamma * h)
        expected.append(h)
    states = model.states(x, dt, torch.ones(2, 5, dtype=torch.bool))
    torch.testing.assert_close(states, torch.stack(expected, 1), rtol=0, atol=1e-12)


def test_the_empirical_mean_accumulates_over_training_batches_only() -> None:
    model = build(2).train()
    batches = []
    for seed in (4, 5):
        g = torch.Generator().manual_seed(seed)
        values = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
        observed = torch.rand(3, 5, 2, generator=g) < 0.5
        valid = torch.ones(3, 5, dtype=torch.bool)
        valid[0, 3:] = False
        values[0, 3:], observed[0, 3:] = 1e3, True  # padding: flagged, but never counted
        batches.append((values, observed, valid))
        model(paired(values, observed), torch.ones(3, 5, dtype=torch.float64), valid)
    values = torch.cat([v.reshape(-1, 2) for v, _, _ in batches])
    counted = torch.cat([(o & m[..., None]).reshape(-1, 2) for _, o, m in batches])
    expected = torch.stack([values[counted[:, d], d].mean() for d in range(2)])
    torch.testing.assert_close(model.x_mean, expected, rtol=1e-12, atol=0)
    assert model.observed_count.tolist() == counted.sum(0).double().tolist()
    # evaluation leaves it alone, and it travels with the weights
    model.eval()
    model(paired(*batches[0][:2]) * 5, torch.ones(3, 5, dtype=torch.float64), batches[0][2])
    torch.testing.assert_close(model.x_mean, expected, rtol=1e-12, atol=0)
    fresh = build(2)
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh.x_mean, expected, rtol=1e-12, atol=0)


def test_an_odd_values_and_mask_input_is_refused() -> None:
    with pytest.raises(ValueError, match="odd"):
        GRUDConfig().build(SequenceIO(5, 2, values_with_mask=True))


def test_mask_inputs_feed_the_gru_only_when_the_task_gives_them() -> None:
    assert isinstance(build(3).cell, nn.GRUCell)
    assert build(3).cell.input_size == 6
    assert build(3, values_with_mask=False).cell.input_size == 3


def node_cell_grud(model, x: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """node_cell.py's GRUD.call over the sequence, Keras layout (kernels ``[in, out]``)."""
    p = {k: v.detach().numpy() for k, v in model.named_parameters()}
    k_d, b_d = p["decay.weight"].T, p["decay.bias"]
    k_r, k_z = (w.T for w in np.split(p["gates.weight"], 2))
    b_r, b_z = np.split(p["gates.bias"], 2)
    k_h, b_h = p["candidate.weight"].T, p["candidate.bias"]
    h = np.zeros((x.shape[0], H))
    out = []
    for t in range(x.shape[1]):
        gamma = np.exp(-np.maximum(dt[:, t, None] @ k_d + b_d, 0))
        h_hat = h * gamma
        fused = np.concatenate([x[:, t], h_hat], axis=1)
        r = 1 / (1 + np.exp(-(fused @ k_r + b_r)))
        z = 1 / (1 + np.exp(-(fused @ k_z + b_z)))
        h_tilde = np.tanh(np.concatenate([x[:, t], r * h_hat], axis=1) @ k_h + b_h)
        h = z * h_hat + (1 - z) * h_tilde
        out.append(h)
    return np.stack(out, axis=1)


def build_odelstm(n_in: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return GRUDConfig(hidden=H, variant=GRUDVariant.odelstm).build(SequenceIO(n_in, 2)).double()


def test_odelstm_variant_follows_node_cell_grud() -> None:
    model = build_odelstm(3)
    with torch.no_grad():  # off the zero biases, and a decay that acts (w·dt + b > 0)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.uniform_(-0.5, 0.5)
        model.decay.weight.abs_()
    values, _ = random_sequence(3, steps=7)
    dt = torch.rand(3, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 3
    states = model.states(values, dt, torch.ones(3, 7, dtype=torch.bool))
    expected = node_cell_grud(model, values.numpy(), dt.numpy())
    np.testing.assert_allclose(states.detach().numpy(), expected, rtol=0, atol=1e-12)
    gamma = torch.exp(-torch.relu(model.decay(dt[..., None])))
    assert gamma.min() < 0.5  # the state decay did act


def test_odelstm_variant_starts_as_keras_dense_layers() -> None:
    """Zero biases, glorot kernels with each dense layer's own fans, no input-decay weights."""
    model = build_odelstm(5)
    names = {n for n, _ in model.named_parameters()}
    assert names == {
        f"{m}.{p}" for m in ("decay", "gates", "candidate", "readout") for p in ("weight", "bias")
    }
    for layer in (model.decay, model.gates, model.candidate):
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    bound = math.sqrt(6 / (5 + H + H))  # glorot limit of a [5 + H, H] kernel
    for block in (*model.gates.weight.chunk(2), model.candidate.weight):
        assert block.abs().max() <= bound and block.abs().max() > 0.8 * bound
    assert model.decay.weight.abs().max() <= math.sqrt(6 / (1 + H))


def test_default_variant_is_che() -> None:
    from cfc_bench.config import compose

    cfg = compose(["model=gru_d"]).model
    assert cfg.variant is GRUDVariant.che and isinstance(cfg.build(SequenceIO(4, 2)), GRUD)
