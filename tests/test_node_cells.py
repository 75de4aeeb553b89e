"""The ODE-LSTM paper's TensorFlow baselines (node_cell.py): CT-GRU, VanillaRNN ("RNN decay"),
BidirectionalRNN, GRU-ODE. Each model's steps against the reference cell's equations written
out here in numpy, in the reference's own layout (Keras kernels [in, out], inputs fused by
concatenation in its order), with fixed weights loaded into the model; then what each does
with the elapsed time, and its initialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO

B, T, N_IN, H = 3, 5, 2, 4
RNG = np.random.default_rng(7)


def build(name: str, *overrides: str, n_in: int = N_IN, hidden: int = H) -> nn.Module:
    torch.manual_seed(0)
    cfg = compose([f"model={name}", f"model.hidden={hidden}", *overrides]).model
    return cfg.build(SequenceIO(n_in, 1)).double()


def kernel(n_in: int, n_out: int) -> np.ndarray:
    return 0.6 * RNG.standard_normal((n_in, n_out))


def bias(n: int) -> np.ndarray:
    return 0.3 * RNG.standard_normal(n)


@torch.no_grad()
def load(layer: nn.Linear, k: np.ndarray, b: np.ndarray) -> None:
    """A Keras Dense layer's kernel [in, out] and bias into a torch Linear."""
    layer.weight.copy_(torch.from_numpy(k.T))
    layer.bias.copy_(torch.from_numpy(b))


def data() -> tuple[np.ndarray, np.ndarray]:
    x = RNG.standard_normal((B, T, N_IN))
    dt = RNG.uniform(0.1, 2.0, (B, T))
    return x, dt


def run(model: nn.Module, x: np.ndarray, dt: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model.states(
            torch.from_numpy(x), torch.from_numpy(dt), torch.ones(dt.shape, dtype=torch.bool)
        )
    return out.numpy()


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --- CT-GRU -------------------------------------------------------------------------------


def ct_gru_reference(x, dt, kr, br, kq, bq, ks, bs, m):
    """node_cell.CTGRU.call, step by step."""
    tau = np.empty(m)
    t = 1.0
    for i in range(m):  # the reference's table
        tau[i], t = t, t * 10.0**0.5
    ln_tau = np.log(tau)
    h_hat = np.zeros((x.shape[0], H, m))
    out = []
    for t in range(x.shape[1]):
        fused = np.concatenate([x[:, t], h_hat.sum(axis=2)], axis=-1)
        rki = softmax(-(((fused @ kr + br).reshape(-1, H, m) - ln_tau) ** 2))
        q_input = (rki * h_hat).sum(axis=2)
        qk = np.tanh(np.concatenate([x[:, t], q_input], axis=1) @ kq + bq)[:, :, None]
        ski = softmax(-(((fused @ ks + bs).reshape(-1, H, m) - ln_tau) ** 2))
        h_hat = ((1 - ski) * h_hat + ski * qk) * np.exp(-dt[:, t, None] / tau)[:, None, :]
        out.append(h_hat.sum(axis=2))
    return np.stack(out, axis=1)


def ct_gru_weights(m: int) -> tuple[np.ndarray, ...]:
    kr, ks = kernel(N_IN + H, H * m), kernel(N_IN + H, H * m)
    # retrieval and storage biases around the middle of the log time scales: every scale used
    br, bs = 3.0 + 2.0 * bias(H * m), 3.0 + 2.0 * bias(H * m)
    return kr, br, kernel(N_IN + H, H), bias(H), ks, bs


@pytest.mark.parametrize("m", [8, 3])
def test_ct_gru_follows_the_reference_cell(m: int) -> None:
    model = build("ct_gru", f"model.scales={m}")
    kr, br, kq, bq, ks, bs = ct_gru_weights(m)

    def scale_major(a: np.ndarray) -> np.ndarray:
        """Outputs u·M + m (the reference's [H, M]) reordered m·H + u (the model's [M, H])."""
        return a.reshape(*a.shape[:-1], H, m).swapaxes(-1, -2).reshape(a.shape)

    load(model.retrieval, scale_major(kr), scale_major(br))
    load(model.detect, kq, bq)
    load(model.storage, scale_major(ks), scale_major(bs))
    x, dt = data()
    np.testing.assert_allclose(
        run(model, x, dt), ct_gru_reference(x, dt, kr, br, kq, bq, ks, bs, m), rtol=0, atol=1e-12
    )


def ct_gru_first_step(ln_tau_stored: float, dt: float) -> np.ndarray:
    """Output after one step from the zero state, the storage layer choosing ``ln_tau_stored``."""
    model = build("ct_gru", n_in=1, hidden=1)
    load(model.detect, np.array([[0.8], [0.0]]), np.array([0.1]))  # q = tanh(0.8 x + 0.1)
    load(model.storage, np.zeros((2, 8)), np.full(8, ln_tau_stored))
    return run(model, np.ones((1, 1, 1)), np.full((1, 1), dt))[0, 0]


def test_ct_gru_memory_lasts_as_long_as_the_chosen_time_scale() -> None:
    """From the zero state the step stores q over the scales; with dt = 0 nothing decays (the
    output is q exactly, whatever the storage weights); the decay exp(−dt/τ_m) follows the
    update, with the step's own dt: stored on the slowest scales (10^3.5) a gap of 30 keeps
    nearly all of it, on the fastest (τ = 1) almost none."""
    q = math.tanh(0.9)
    slowest, fastest = 3.5 * math.log(10), 0.0
    for ln_tau in (slowest, fastest, 1.7):
        assert ct_gru_first_step(ln_tau, 0.0) == pytest.approx([q], abs=1e-12)
    assert ct_gru_first_step(slowest, 30.0)[0] / q > 0.98
    assert ct_gru_first_step(fastest, 30.0)[0] / q < 1e-3
    held = [ct_gru_first_step(1.7, dt)[0] for dt in (0.0, 1.0, 10.0, 100.0, 1e5)]
    assert all(a > b for a, b in zip(held, held[1:], strict=False)) and held[-1] < 1e-12


# --- RNN decay (VanillaRNN) ---------------------------------------------------------------


def vanilla_reference(x, dt, k1, b1, k2, b2, tau):
    """node_cell.VanillaRNN.call, step by step."""
    h = np.zeros((x.shape[0], H))
    out = []
    for t in range(x.shape[1]):
        fused = np.concatenate([x[:, t], h], axis=-1)
        h = np.tanh(fused @ k1 + b1) @ k2 + b2 - dt[:, t, None] * tau
        out.append(h)
    return np.stack(out, axis=1)


def test_rnn_decay_follows_the_reference_cell() -> None:
    model = build("rnn_decay")
    k1, b1, k2, b2, tau = kernel(N_IN + H, H), bias(H), kernel(H, H), bias(H), bias(H)
    load(model.layer, k1, b1)
    load(model.out_layer, k2, b2)
    with torch.no_grad():
        model.tau.copy_(torch.from_numpy(tau))
    x, dt = data()
    np.testing.assert_allclose(
        run(model, x, dt), vanilla_reference(x, dt, k1, b1, k2, b2, tau), rtol=0, atol=1e-12
    )


def test_rnn_decay_drifts_linearly_in_elapsed_time_from_its_initial_rate() -> None:
    """As initialised (τ = 0.1 for every unit) a step's state falls by exactly 0.1·dt from
    its dt = 0 value, whatever the state: a linear drift, not a decay towards 0; with dt = 0
    it is a two-layer RNN."""
    model = build("rnn_decay")
    tau = float(np.float32(0.1))  # drawn in float32
    assert torch.equal(model.tau, torch.full((H,), tau, dtype=torch.float64))
    x, _ = data()
    zero = np.zeros((B, 1))
    first = run(model, x[:, :1], zero)
    expected = model.out_layer(
        torch.tanh(model.layer(torch.from_numpy(np.c_[x[:, 0], np.zeros((B, H))])))
    )
    np.testing.assert_allclose(first[:, 0], expected.detach().numpy(), rtol=0, atol=1e-12)
    for dt in (0.5, 3.0, 40.0):
        moved = run(model, x[:, :1], zero + dt)
        np.testing.assert_allclose(moved - first, np.full_like(first, -tau * dt), atol=1e-12)


# --- Bidirectional RNN --------------------------------------------------------------------


def bidirectional_reference(x, dt, lk, lr, lb, ck, cr, cb, scale):
    """node_cell.BidirectionalRNN.call: node_cell.LSTMCell on [[x ; s], elapsed] (which it
    concatenates) and CTRNNCell(num_unfolds=4, "euler", tau=1) on [[x ; u], elapsed]."""
    c = u = s = np.zeros((x.shape[0], H))
    out = []
    for t in range(x.shape[1]):
        elapsed = dt[:, t, None]
        lstm_in = np.concatenate([x[:, t], s, elapsed], axis=-1)
        ctrnn_in = np.concatenate([x[:, t], u], axis=-1)
        z = lstm_in @ lk + u @ lr + lb
        i, ig, fg, og = np.split(z, 4, axis=-1)
        c = c * sigmoid(fg + 1.0) + np.tanh(i) * sigmoid(ig)
        u = np.tanh(c) * sigmoid(og)
        for _ in range(4):
            dh = scale * np.tanh(ctrnn_in @ ck + s @ cr + cb) - s
            s = s + elapsed / 4 * dh
        out.append(u + s)
    return np.stack(out, axis=1)


def load_lstm(cell: nn.LSTMCell, kernel_in: np.ndarray, kernel_rec: np.ndarray, b: np.ndarray):
    """A Keras LSTMCell (gates i, ig, fg, og; forget +1 added in the call) into torch's
    (gates i, f, g, o; the +1 in the bias)."""
    order = [1, 2, 0, 3]  # torch's i, f, g, o are Keras' ig, fg, i, og

    def torch_rows(k: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([np.split(k, 4, axis=-1)[j] for j in order], -1).T)

    with torch.no_grad():
        cell.weight_ih.copy_(torch_rows(kernel_in))
        cell.weight_hh.copy_(torch_rows(kernel_rec))
        cell.bias_ih.copy_(torch_rows(b[None]).squeeze(1))
        cell.bias_ih[H : 2 * H] += 1.0
        cell.bias_hh.zero_()


def test_bidirectional_rnn_follows_the_reference_cell() -> None:
    model = build("bidirectional_rnn")
    lk, lr, lb = kernel(N_IN + H + 1, 4 * H), kernel(H, 4 * H), bias(4 * H)
    ck, cr, cb, scale = kernel(N_IN + H, H), kernel(H, H), bias(H), 1.0 + bias(H)
    load_lstm(model.lstm, lk, lr, lb)
    load(model.ctrnn.input_map, ck, cb)
    with torch.no_grad():
        model.ctrnn.recurrent.weight.copy_(torch.from_numpy(cr.T))
        model.ctrnn.scale.copy_(torch.from_numpy(scale))
    x, dt = data()
    np.testing.assert_allclose(
        run(model, x, dt),
        bidirectional_reference(x, dt, lk, lr, lb, ck, cr, cb, scale),
        rtol=0,
        atol=1e-12,
    )


def test_bidirectional_rnn_without_elapsed_time_is_its_lstm_alone() -> None:
    """dt = 0: the CT-RNN state never leaves 0, so the output is the LSTM reading [x ; 0 ; 0];
    with elapsed time the CT-RNN adds to it."""
    model = build("bidirectional_rnn")
    x, dt = data()
    lstm = nn.LSTM(N_IN, H, batch_first=True).double()
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(model.lstm.weight_ih[:, :N_IN])
        lstm.weight_hh_l0.copy_(model.lstm.weight_hh)
        lstm.bias_ih_l0.copy_(model.lstm.bias_ih + model.lstm.bias_hh)
        lstm.bias_hh_l0.zero_()
        alone = lstm(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(run(model, x, np.zeros_like(dt)), alone, rtol=0, atol=1e-12)
    assert np.abs(run(model, x, dt) - alone).max() > 1e-2


@torch.no_grad()
def test_bidirectional_rnn_starts_as_the_reference_cells() -> None:
    model = build("bidirectional_rnn")
    expected = torch.zeros(4 * H, dtype=torch.float64)
    expected[H : 2 * H] = 1.0  # LSTMCell's sigmoid(fg + 1.0) on a zero bias
    assert torch.equal(model.lstm.bias_ih + model.lstm.bias_hh, expected)
    assert not model.lstm.bias_hh.requires_grad  # one trainable bias, as the Keras cell
    assert model.lstm.weight_ih.shape == (4 * H, N_IN + H + 1)  # [x ; s ; dt]
    w = model.lstm.weight_hh
    torch.testing.assert_close(w.T @ w, torch.eye(H, dtype=torch.float64), atol=1e-6, rtol=0)
    assert torch.equal(model.ctrnn.scale, torch.ones(H, dtype=torch.float64))
    assert model.ctrnn.tau == 1.0 and model.ctrnn.input_map.weight.shape == (H, N_IN + H)


# --- GRU-ODE ------------------------------------------------------------------------------


def gru_ode_reference(x, dt, kr, br, kz, bz, kg, bg, unfolds=4):
    """node_cell.GRUODE.call: num_unfolds Euler steps of _dh_dt."""
    h = np.zeros((x.shape[0], H))
    out = []
    for t in range(x.shape[1]):
        delta_t = dt[:, t, None] / unfolds
        for _ in range(unfolds):
            fused = np.concatenate([x[:, t], h], axis=-1)
            rt, zt = sigmoid(fused @ kr + br), sigmoid(fused @ kz + bz)
            gt = np.tanh(np.concatenate([x[:, t], rt * h], axis=-1) @ kg + bg)
            h = h + delta_t * (1.0 - zt) * (gt - h)
        out.append(h)
    return np.stack(out, axis=1)


def gru_ode_weights() -> list[np.ndarray]:
    return [a for _ in range(3) for a in (kernel(N_IN + H, H), bias(H))]


@pytest.mark.parametrize("steps", [4, 2])
def test_gru_ode_follows_the_reference_cell(steps: int) -> None:
    model = build("gru_ode", f"model.steps={steps}")
    kr, br, kz, bz, kg, bg = weights = gru_ode_weights()
    load(model.reset, kr, br)
    load(model.update, kz, bz)
    load(model.candidate, kg, bg)
    x, dt = data()
    np.testing.assert_allclose(
        run(model, x, dt), gru_ode_reference(x, dt, *weights, unfolds=steps), rtol=0, atol=1e-12
    )


def test_gru_ode_relaxes_towards_its_candidate_and_holds_without_elapsed_time() -> None:
    """Without the state's share in the gates (U = 0), g and z are constant over an interval:
    4 Euler steps give h = g + (h0 − g)·(1 − (1 − z)·dt/4)^4, and h moves from 0 towards g;
    dt = 0 leaves the state at 0 whatever the input."""
    model = build("gru_ode")
    with torch.no_grad():
        for layer in (model.reset, model.update, model.candidate):
            layer.weight[:, N_IN:] = 0.0
    x, dt = data()
    assert np.abs(run(model, x, np.zeros_like(dt))).max() == 0.0
    one = torch.from_numpy(x[:, 0])
    with torch.no_grad():
        z = torch.sigmoid(model.update(torch.cat([one, one.new_zeros(B, H)], -1))).numpy()
        g = torch.tanh(model.candidate(torch.cat([one, one.new_zeros(B, H)], -1))).numpy()
    for gap in (0.5, 2.0, 6.0):
        h = run(model, x[:, :1], np.full((B, 1), gap))[:, 0]
        np.testing.assert_allclose(h, g - g * (1 - (1 - z) * gap / 4) ** 4, rtol=0, atol=1e-12)
        assert np.all(np.abs(h - g) < np.abs(g))  # closer to g than the start


@torch.no_grad()
def test_gru_ode_and_ct_gru_start_as_the_reference_dense_layers() -> None:
    """Keras Dense defaults: glorot-uniform kernels over the fused input, zero biases; the
    GRU-ODE reset gate's bias starts at 1."""
    gru_ode, ct_gru = build("gru_ode"), build("ct_gru")
    bound = math.sqrt(6 / (N_IN + H + H))
    assert torch.equal(gru_ode.reset.bias, torch.ones(H, dtype=torch.float64))
    for layer in (gru_ode.update, gru_ode.candidate, ct_gru.detect):
        assert torch.equal(layer.bias, torch.zeros(H, dtype=torch.float64))
        assert layer.weight.shape == (H, N_IN + H) and layer.weight.abs().max() <= bound
    assert ct_gru.retrieval.weight.shape == ct_gru.storage.weight.shape == (8 * H, N_IN + H)


@pytest.mark.parametrize(
    "model,override,message",
    [
        ("gru_ode", "model.solver=dopri5", "gru_ode integrates with fixed steps"),
        ("bidirectional_rnn", "model.steps=0", "model.steps must be >= 1"),
        ("ct_gru", "model.scales=0", "model.scales must be >= 1"),
    ],
)
def test_bad_settings_say_what_is_wrong(model: str, override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compose([f"model={model}", override]).model.build(SequenceIO(N_IN, 1))
