"""Checks every model config in conf/model must pass: shapes, causality, padding."""

from __future__ import annotations

import pytest
import torch

from cfc_bench.config import compose, config_names
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.layers import LECUN_SCALE, LECUN_SLOPE, Activation, activation

MODELS = config_names("model")
B, T, N_IN, N_OUT = 4, 9, 6, 3


def build(name: str, values_with_mask: bool = False, *overrides: str):
    torch.manual_seed(0)
    cfg = compose([f"model={name}", "model.hidden=8", *overrides]).model
    model = cfg.build(SequenceIO(N_IN, N_OUT, values_with_mask)).double().eval()
    return model


def inputs(values_with_mask: bool = False):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, N_IN, generator=g, dtype=torch.float64)
    if values_with_mask:
        x[..., N_IN // 2 :] = (x[..., N_IN // 2 :] > 0).double()  # observed-mask half
    dt = torch.rand(B, T, generator=g, dtype=torch.float64) + 0.1
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 6:] = False  # padding after the last valid step
    mask[1, 3:] = False
    return x, dt, mask


def test_every_model_is_listed() -> None:
    assert {"cfc", "lstm"} <= set(MODELS)


@pytest.mark.parametrize("values_with_mask", [False, True], ids=["plain", "values+mask"])
@pytest.mark.parametrize("name", MODELS)
def test_shapes(name: str, values_with_mask: bool) -> None:
    model = build(name, values_with_mask)
    x, dt, mask = inputs(values_with_mask)
    assert model(x, dt, mask, return_sequences=True).shape == (B, T, N_OUT)
    assert model(x, dt, mask).shape == (B, N_OUT)


@pytest.mark.parametrize("name", MODELS)
def test_causal(name: str) -> None:
    """Changing step k (input and elapsed time) leaves every output before k unchanged."""
    model = build(name)
    x, dt, mask = inputs()
    k = 5
    base = model(x, dt, mask, return_sequences=True)
    x2, dt2 = x.clone(), dt.clone()
    x2[:, k:] += 1.0
    dt2[:, k:] *= 3.0
    moved = model(x2, dt2, mask, return_sequences=True)
    torch.testing.assert_close(moved[:, :k], base[:, :k], atol=1e-12, rtol=0)
    assert (moved[:, k:] - base[:, k:]).abs().max() > 1e-6  # the change does reach later steps


@pytest.mark.parametrize("name", MODELS)
def test_padding_does_not_change_last_valid_output(name: str) -> None:
    model = build(name)
    x, dt, mask = inputs()
    base = model(x, dt, mask)
    x2, dt2 = x.clone(), dt.clone()
    x2[~mask] = 7.0
    dt2[~mask] = 5.0
    torch.testing.assert_close(model(x2, dt2, mask), base, atol=1e-12, rtol=0)
    # the last-valid output is the per-step output at the last valid step
    seq = model(x, dt, mask, return_sequences=True)
    torch.testing.assert_close(base[0], seq[0, 5], atol=1e-12, rtol=0)
    torch.testing.assert_close(base[1], seq[1, 2], atol=1e-12, rtol=0)


@pytest.mark.parametrize("fill", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("name", MODELS)
def test_padding_reaches_neither_outputs_nor_gradients(
    name: str, return_sequences: bool, fill: float
) -> None:
    """NaN or inf in padded inputs and elapsed times gives the outputs and parameter gradients
    of zero padding, all finite."""
    model = build(name).train()
    x, dt, mask = inputs()
    results = []
    for value in (0.0, fill):
        x2, dt2 = x.clone(), dt.clone()
        x2[~mask] = value
        dt2[~mask] = value
        model.zero_grad()
        torch.manual_seed(2)  # the same dropout draws in both passes
        out = model(x2, dt2, mask, return_sequences=return_sequences)
        out.square().sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        results.append((out.detach(), grads))
    (zero_out, zero_grads), (filled_out, filled_grads) = results
    torch.testing.assert_close(filled_out, zero_out, atol=0, rtol=0)
    for filled, zero in zip(filled_grads, zero_grads, strict=True):
        torch.testing.assert_close(filled, zero, atol=0, rtol=0)


@pytest.mark.parametrize("kind", [a.name for a in Activation])
def test_shared_activations_give_their_function_and_gradient(kind: str) -> None:
    """Each shared activation (LeCun's tanh: 1.7159·tanh(0.666·x)) and its autograd gradient."""
    expected = {
        "silu": torch.nn.functional.silu,
        "relu": torch.relu,
        "tanh": torch.tanh,
        "gelu": torch.nn.functional.gelu,
        "lecun_tanh": lambda u: LECUN_SCALE * torch.tanh(LECUN_SLOPE * u),
    }[kind]
    x = torch.linspace(-3, 3, 13, dtype=torch.float64, requires_grad=True)
    ours, theirs = activation(kind)(x), expected(x)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(*(torch.autograd.grad(y.sum(), x)[0] for y in (ours, theirs)))
