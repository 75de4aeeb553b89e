"""Continuous-time LSTM: single steps against node_cell.HawkLSTMCell's equations written out in
numpy with the Keras cell's weight layout; the decay's limits; the reference's initialisation."""

from __future__ import annotations

import numpy as np
import torch
from keras_cells import assert_keras_init, keras_weights, sigmoid  # tests/ is on the path

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.ct_lstm import CTLSTMConfig

B, T, N_IN, H = 2, 5, 2, 3


def reference(x: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """node_cell.HawkLSTMCell.call over a sequence, in numpy; gate blocks (input activation,
    input gate, forget gate, output gate, input gate bar, forget gate bar, decay) as in the
    reference."""
    kernel, recurrent, bias = keras_weights(7, N_IN, H)
    c = c_bar = h = np.zeros((x.shape[0], H))
    out = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        act, ig, fg, og, ig_bar, fg_bar, d = np.split(z, 7, axis=-1)
        c = c * sigmoid(fg) + np.tanh(act) * sigmoid(ig)
        c_bar = c_bar * sigmoid(fg_bar) + np.tanh(act) * sigmoid(ig_bar)
        delta = np.log1p(np.exp(d))
        c_t = c_bar + (c - c_bar) * np.exp(-delta * dt[:, t : t + 1])
        h = np.tanh(c_t) * sigmoid(og)
        out.append(h)
    return np.stack(out, axis=1)


def build() -> torch.nn.Module:
    torch.manual_seed(0)
    return CTLSTMConfig(hidden=H).build(SequenceIO(N_IN, 1)).double()


@torch.no_grad()
def load_reference(model: torch.nn.Module) -> None:
    kernel, recurrent, bias = keras_weights(7, N_IN, H)
    # torch stores [out, in]; the blocks keep the reference's order
    model.input_map.weight.copy_(torch.from_numpy(kernel.T))
    model.input_map.bias.copy_(torch.from_numpy(bias))
    model.recurrent.weight.copy_(torch.from_numpy(recurrent.T))


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.normal(size=(B, T, N_IN)))
    dt = torch.from_numpy(rng.uniform(0, 3, size=(B, T)))
    return x, dt, torch.ones(B, T, dtype=torch.bool)


@torch.no_grad()
def test_steps_follow_the_reference_cell() -> None:
    model = build()
    load_reference(model)
    x, dt, mask = data()
    expected = torch.from_numpy(reference(x.numpy(), dt.numpy()))
    torch.testing.assert_close(model.states(x, dt, mask), expected, rtol=0, atol=1e-12)


@torch.no_grad()
def test_zero_elapsed_time_reads_c_and_a_long_one_reads_c_bar() -> None:
    """First step (zero state): c = σ(i)·tanh(g), c̄ = σ(ī)·tanh(g). At dt = 0 the output
    is σ(o)·tanh(c), blind to the ī block; as dt → ∞ it is σ(o)·tanh(c̄), blind to i."""
    x, _, mask = data()
    x, mask = x[:, :1], mask[:, :1]
    blocks = {"i": 1, "i_bar": 4}
    for dt_value, blind, seen in ((0.0, "i_bar", "i"), (1e4, "i", "i_bar")):
        dt = torch.full((B, 1), dt_value, dtype=torch.float64)
        model = build()
        load_reference(model)
        before = model.states(x, dt, mask)
        rows = slice(blocks[blind] * H, (blocks[blind] + 1) * H)
        model.input_map.weight[rows] += 1.0
        model.input_map.bias[rows] += 1.0
        torch.testing.assert_close(model.states(x, dt, mask), before, rtol=0, atol=1e-12)
        rows = slice(blocks[seen] * H, (blocks[seen] + 1) * H)
        model.input_map.bias[rows] += 1.0
        assert (model.states(x, dt, mask) - before).abs().max() > 1e-3


@torch.no_grad()
def test_starts_as_the_reference_cell() -> None:
    model = build()
    assert torch.equal(model.input_map.bias, torch.zeros(7 * H, dtype=torch.float64))
    assert_keras_init(model.input_map.weight, model.recurrent.weight)


def test_config_file_matches_the_schema_defaults() -> None:
    cfg = compose(["model=ct_lstm"]).model
    assert (cfg.name, cfg.hidden) == ("ct_lstm", 64)
