"""CfC-mmRNN's TensorFlow coupling (``model.coupling=tensorflow``) against the equations of the
TensorFlow ``MixedCfcCell`` (raminmh/CfC ``tf_cfc.py``), written out here in numpy: the LSTM
reads ``x_t`` and the CfC's previous state, and its output is the CfC's input, so the backbone
reads ``[u_t ; h_{t−1}]``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.cfc import CfCConfig, Coupling

B, T, N_IN, H, UNITS = 3, 5, 2, 4, 6


def build(coupling: Coupling = Coupling.tensorflow, **kw):
    torch.manual_seed(0)
    cfg = CfCConfig(
        hidden=H, backbone_units=UNITS, mixed_memory=True, coupling=coupling, forget_bias=0.6, **kw
    )
    return cfg.build(SequenceIO(N_IN, 2)).double()


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


def mixed_cfc_cell(model, x: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """MixedCfcCell.call over the sequence (relu backbone, tanh heads), Keras layout: kernels
    ``[in, out]``; returns every step's CfC state ``[B,T,H]``. The time gate is written
    σ(t_a·dt + t_b) as ours; tf_cfc.py's σ(−t_a·dt + t_b) is the same family (the sign lies in
    t_a's kernel and bias, whose initial draws are symmetric)."""
    p = {k: v.detach().numpy() for k, v in model.named_parameters()}
    k_in, k_rec = p["lstm.input_map.weight"].T, p["lstm.recurrent_map.weight"].T
    bias = p["lstm.input_map.bias"]
    k_bb, b_bb = p["backbone.0.weight"].T, p["backbone.0.bias"]
    ff1, ff2, t_a, t_b = (w.T for w in np.split(p["heads.weight"], 4))
    bf1, bf2, bt_a, bt_b = np.split(p["heads.bias"], 4)
    cell, ode = np.zeros((B, H)), np.zeros((B, H))
    out = []
    for t in range(T):
        i, ig, fg, og = np.split(x[:, t] @ k_in + ode @ k_rec + bias, 4, axis=1)
        cell = cell * sigmoid(fg + 0.6) + np.tanh(i) * sigmoid(ig)
        ode_input = np.tanh(cell) * sigmoid(og)
        z = np.maximum(np.concatenate([ode_input, ode], axis=1) @ k_bb + b_bb, 0)
        interp = sigmoid((z @ t_a + bt_a) * dt[:, t, None] + z @ t_b + bt_b)
        ode = np.tanh(z @ ff1 + bf1) * (1 - interp) + interp * np.tanh(z @ ff2 + bf2)
        out.append(ode)
    return np.stack(out, axis=1)


def inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, N_IN, generator=g, dtype=torch.float64)
    dt = torch.rand(B, T, generator=g, dtype=torch.float64) * 2 + 0.1
    return x, dt, torch.ones(B, T, dtype=torch.bool)


def test_tensorflow_coupling_follows_mixed_cfc_cell() -> None:
    model = build(backbone_activation="relu")
    with torch.no_grad():  # off the zero initialisation, so that the LSTM biases count
        model.lstm.input_map.bias.uniform_(-0.5, 0.5)
    x, dt, mask = inputs()
    expected = mixed_cfc_cell(model, x.numpy(), dt.numpy())
    states = model.states(x, dt, mask)
    np.testing.assert_allclose(states.detach().numpy(), expected, rtol=0, atol=1e-12)
    # the last valid step of ragged sequences, as the readout sees it
    ragged = torch.arange(T).expand(B, T) < torch.tensor([[T], [2], [1]])
    last = model.last_states(x, dt, ragged).detach().numpy()
    np.testing.assert_allclose(last, expected[[0, 1, 2], [T - 1, 1, 0]], rtol=0, atol=1e-12)


def test_tensorflow_coupling_starts_as_the_keras_cell() -> None:
    """LSTM biases zero, the backbone reads [u ; h] (2H wide); the pytorch coupling keeps its
    ±0.1 biases and [x ; h]."""
    tf, torch_coupled = build(), build(Coupling.pytorch)
    assert torch.equal(tf.lstm.input_map.bias, torch.zeros(4 * H, dtype=torch.float64))
    assert tf.backbone[0].in_features == 2 * H
    assert torch_coupled.lstm.input_map.bias.abs().max() > 0
    assert torch_coupled.backbone[0].in_features == N_IN + H


@pytest.mark.parametrize("layers", [0, 2])
def test_tensorflow_coupling_trains(layers: int) -> None:
    """Gradients reach every parameter, finite, through the reference step."""
    model = build(backbone_layers=layers, backbone_dropout=0.2).train()
    x, dt, mask = inputs()
    model(x, dt, mask).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.isfinite().all() and p.grad.abs().max() > 0, name


def test_kernels_are_the_cfc_cells_dense_kernels() -> None:
    """What trainer.l2_kernel penalises: backbone and heads matrices, as tf_cfc.py's
    kernel_regularizer; not the LSTM's (MixedCfcCell regularises none), not A or w_tau."""
    model = build(backbone_layers=2)
    assert [id(p) for p in model.kernels()] == [
        id(model.backbone[0].weight),
        id(model.backbone[1].weight),
        id(model.heads.weight),
    ]
    pure = CfCConfig(hidden=H, mode="pure").build(SequenceIO(N_IN, 2))
    assert [id(p) for p in pure.kernels()] == [id(pure.backbone[0].weight), id(pure.heads.weight)]


def test_config_file_keeps_the_pytorch_coupling() -> None:
    assert compose(["model=cfc_mmrnn"]).model.coupling is Coupling.pytorch
