"""Causal Transformer: each step's output depends on that step's prefix only, positions are
Vaswani et al.'s sinusoids and make order matter, and a wrong head count is refused."""

from __future__ import annotations

import math

import pytest
import torch

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.transformer import TransformerConfig, sinusoidal_positions

B, T, N_IN = 3, 7, 4


def build():
    torch.manual_seed(0)
    cfg = TransformerConfig(hidden=8, heads=2, feedforward=16)
    return cfg.build(SequenceIO(N_IN, 2)).double().eval()


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, N_IN, generator=g, dtype=torch.float64)
    dt = torch.rand(B, T, generator=g, dtype=torch.float64) + 0.1
    return x, dt, torch.ones(B, T, dtype=torch.bool)


@torch.no_grad()
def test_each_output_is_that_of_its_prefix_alone() -> None:
    """Output t of the whole sequence equals the last output of steps 0..t run alone: no later
    input (value or elapsed time) reaches it."""
    model = build()
    x, dt, mask = data()
    full = model(x, dt, mask, return_sequences=True)
    for t in range(T):
        prefix = model(x[:, : t + 1], dt[:, : t + 1], mask[:, : t + 1], return_sequences=True)
        torch.testing.assert_close(full[:, t], prefix[:, -1], atol=1e-12, rtol=0)


@torch.no_grad()
def test_positions_are_the_sinusoids_and_make_order_matter() -> None:
    pe = sinusoidal_positions(5, 6, torch.zeros((), dtype=torch.float64))
    for t in range(5):
        for i in range(3):
            angle = t / 10000 ** (2 * i / 6)
            assert pe[t, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-12)
            assert pe[t, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-12)
    # without positions self-attention ignores order; with them, swapping two steps moves
    # the last output
    model = build()
    x, dt, mask = data()
    swapped = x.clone()
    swapped[:, [1, 2]] = x[:, [2, 1]]
    dt_swapped = dt.clone()
    dt_swapped[:, [1, 2]] = dt[:, [2, 1]]
    moved = (model(swapped, dt_swapped, mask) - model(x, dt, mask)).abs().max().item()
    assert moved > 1e-3


def test_heads_must_divide_the_width() -> None:
    with pytest.raises(ValueError, match="model.heads=3 must divide model.hidden=64"):
        compose(["model=transformer", "model.heads=3"]).model.build(SequenceIO(N_IN, 2))
