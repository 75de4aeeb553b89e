"""Phased LSTM: single steps against node_cell.PhasedLSTM's equations written out in numpy with
the Keras cell's weight layout; the time gate's three phases; the reference's initialisation."""

from __future__ import annotations

import math

import numpy as np
import torch
from keras_cells import assert_keras_init, keras_weights, sigmoid  # tests/ is on the path

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.phased_lstm import PhasedLSTMConfig, time_gate

B, N_IN, H = 2, 2, 3
PERIOD, SHIFT, RATIO, LEAK = 1.0, 0.25, 0.5, 1e-3
# elapsed times hitting each phase of the gate: φ = ((dt − 0.25) mod 1) = 0.05 (rising),
# 0.35 (falling), 0.75 (closed), 0.85 (closed, from a negative dt − s), 0.75 (dt = 0)
DT = [0.3, 0.6, 1.0, 0.1, 0.0]
GATE = [2 * 0.05 * 0.5, 2 - 2 * 0.35 / 0.5, LEAK * 0.75, LEAK * 0.85, LEAK * 0.75]


def inverse_softplus(v: float) -> float:
    return math.log(math.expm1(v))


def reference(x: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """node_cell.PhasedLSTM.call over a sequence, in numpy; gate blocks (input activation,
    input gate, forget gate, output gate) as in the reference."""
    kernel, recurrent, bias = keras_weights(4, N_IN, H)
    c = h = np.zeros((x.shape[0], H))
    out = []
    for t in range(x.shape[1]):
        phi = np.mod(dt[:, t : t + 1] - SHIFT, PERIOD) / PERIOD
        k = np.where(
            phi < 0.5 * RATIO,
            2 * phi * RATIO,
            np.where(phi < RATIO, 2.0 - 2 * phi / RATIO, LEAK * phi),
        )
        z = x[:, t] @ kernel + h @ recurrent + bias
        act, ig, fg, og = np.split(z, 4, axis=-1)
        c_tilde = c * sigmoid(fg + 1.0) + np.tanh(act) * sigmoid(ig)
        h_tilde = np.tanh(c_tilde) * sigmoid(og)
        c = k * c_tilde + (1 - k) * c
        h = k * h_tilde + (1 - k) * h
        out.append(h)
    return np.stack(out, axis=1)


def build(leak: float = LEAK) -> torch.nn.Module:
    torch.manual_seed(0)
    return PhasedLSTMConfig(hidden=H, leak=leak).build(SequenceIO(N_IN, 1)).double()


@torch.no_grad()
def load_reference(model: torch.nn.Module) -> None:
    """The Keras weights in torch's layout: rows in gate order (i, f, g, o), the forget
    gate's constant +1 in the one trainable bias."""
    kernel, recurrent, bias = keras_weights(4, N_IN, H)
    order = [1, 2, 0, 3]  # torch's i, f, g, o among Keras' act, ig, fg, og
    blocks = [np.split(a, 4, axis=-1) for a in (kernel, recurrent, bias)]
    cell = model.cell
    cell.weight_ih.copy_(torch.from_numpy(np.concatenate([blocks[0][j] for j in order], 1).T))
    cell.weight_hh.copy_(torch.from_numpy(np.concatenate([blocks[1][j] for j in order], 1).T))
    cell.bias_ih.copy_(torch.from_numpy(np.concatenate([blocks[2][j] for j in order])))
    cell.bias_ih[H : 2 * H] += 1.0
    cell.bias_hh.zero_()
    model.raw_period.fill_(inverse_softplus(PERIOD))
    model.raw_shift.fill_(inverse_softplus(SHIFT))
    model.raw_ratio.fill_(inverse_softplus(RATIO))


def data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(B, len(DT), N_IN)))
    dt = torch.tensor([DT, DT[::-1]], dtype=torch.float64)  # each phase, in two orders
    return x, dt


def test_time_gate_in_each_phase() -> None:
    gate = time_gate(
        torch.tensor(DT, dtype=torch.float64),
        torch.tensor(PERIOD),
        torch.tensor(SHIFT),
        torch.tensor(RATIO),
        LEAK,
    )
    torch.testing.assert_close(gate, torch.tensor(GATE, dtype=torch.float64), rtol=0, atol=1e-12)


@torch.no_grad()
def test_steps_follow_the_reference_cell() -> None:
    model = build()
    load_reference(model)
    x, dt = data()
    mask = torch.ones(dt.shape, dtype=torch.bool)
    expected = torch.from_numpy(reference(x.numpy(), dt.numpy()))
    torch.testing.assert_close(model.states(x, dt, mask), expected, rtol=0, atol=1e-12)


@torch.no_grad()
def test_a_closed_gate_keeps_the_state_but_for_the_leak() -> None:
    x, dt = data()
    mask = torch.ones(dt.shape, dtype=torch.bool)
    sealed = build(leak=0.0)
    load_reference(sealed)
    states = sealed.states(x, dt, mask)
    # sample 0: steps 2, 3, 4 are closed; with no leak the state after step 1 stays as it is
    for t in (2, 3, 4):
        assert torch.equal(states[0, t], states[0, 1])
    # with the leak, a closed step moves the state by α·φ of the open update's difference
    leaky = build()
    load_reference(leaky)
    moved = leaky.states(x, dt, mask)[0, 2] - leaky.states(x, dt, mask)[0, 1]
    assert 0 < moved.abs().max() < 10 * LEAK
    # sample 1 (the reverse order): steps 0-2 closed, step 3 (dt = 0.6) open, which moves
    # the state far more than the leak
    assert (states[1, 3] - states[1, 2]).abs().max() > 0.05


@torch.no_grad()
def test_starts_as_the_reference_cell() -> None:
    model = build()
    ln2 = torch.tensor([math.log(2.0)], dtype=torch.float64)
    for raw in (model.raw_period, model.raw_shift, model.raw_ratio):  # softplus(0) = ln 2
        torch.testing.assert_close(torch.nn.functional.softplus(raw), ln2)
    bias = model.cell.bias_ih + model.cell.bias_hh
    expected = torch.zeros(4 * H, dtype=torch.float64)
    expected[H : 2 * H] = 1.0  # sigmoid(fg + 1.0) on a zero bias
    assert torch.equal(bias, expected)
    assert not model.cell.bias_hh.requires_grad  # one trainable bias, as the Keras cell
    assert_keras_init(model.cell.weight_ih, model.cell.weight_hh)


def test_config_file_matches_the_schema_defaults() -> None:
    cfg = compose(["model=phased_lstm"]).model
    assert (cfg.name, cfg.hidden, cfg.leak) == ("phased_lstm", 64, PhasedLSTMConfig().leak)
