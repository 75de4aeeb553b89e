"""LSTM/GRU baselines: PyTorch's initialisation or the TensorFlow reference cell's."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cfc_bench.models.base import SequenceIO
from cfc_bench.models.rnn import RNNConfig

IO = SequenceIO(input_size=3, output_size=2)


def test_keras_init_starts_as_the_reference_lstm_cell() -> None:
    hidden = 16
    lstm = RNNConfig(hidden=hidden, init="keras", forget_bias=1.0).build(IO).rnn
    forget = torch.zeros(4 * hidden)
    forget[hidden : 2 * hidden] = 1.0  # torch's gates: input, forget, cell, output
    assert torch.equal(lstm.bias_ih_l0, forget) and not lstm.bias_hh_l0.any()
    w_hh = lstm.weight_hh_l0  # [4H, H]: orthonormal columns
    assert torch.allclose(w_hh.t() @ w_hh, torch.eye(hidden), atol=1e-5)
    bound = math.sqrt(6 / (IO.input_size + 1 + 4 * hidden))  # glorot over [I+1, 4H]
    assert lstm.weight_ih_l0.abs().max() <= bound


def test_torch_init_is_pytorchs_draw() -> None:
    torch.manual_seed(0)
    ours = RNNConfig(hidden=8).build(IO).rnn
    torch.manual_seed(0)
    nn.Linear(8, IO.output_size)  # the readout is drawn first, in the base class
    plain = nn.LSTM(IO.input_size + 1, 8, batch_first=True)
    for a, b in zip(ours.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_forget_bias_on_a_gru_is_refused() -> None:
    with pytest.raises(ValueError, match="model.forget_bias=1.0 needs model.cell=lstm"):
        RNNConfig(name="gru", cell="gru", forget_bias=1.0).build(IO)


def test_one_bias_keeps_the_outputs_and_trains_a_single_vector() -> None:
    torch.manual_seed(0)
    two = RNNConfig(hidden=8).build(IO)
    torch.manual_seed(0)
    one = RNNConfig(hidden=8, one_bias=True).build(IO)
    g = torch.Generator().manual_seed(1)
    x, dt = torch.randn(2, 5, IO.input_size, generator=g), torch.rand(2, 5, generator=g)
    mask = torch.ones(2, 5, dtype=torch.bool)
    torch.testing.assert_close(one(x, dt, mask), two(x, dt, mask))  # b_hh folded into b_ih
    one(x, dt, mask).sum().backward()
    assert not one.rnn.bias_hh_l0.any() and one.rnn.bias_hh_l0.grad is None
    assert one.rnn.bias_ih_l0.grad is not None
    n_trained = sum(p.numel() for p in one.parameters() if p.requires_grad)
    assert n_trained == sum(p.numel() for p in two.parameters()) - 4 * 8


def test_one_bias_on_a_gru_is_refused() -> None:
    with pytest.raises(ValueError, match="model.one_bias=true needs model.cell=lstm"):
        RNNConfig(name="gru", cell="gru", one_bias=True).build(IO)
