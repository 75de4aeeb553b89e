"""Activations the models share: the :class:`Activation` a config names, and LeCun's tanh
``1.7159·tanh(0.666·x)`` (the TensorFlow CfC's default backbone activation)."""

from __future__ import annotations

from enum import Enum

import torch
from torch import nn

LECUN_SCALE, LECUN_SLOPE = 1.7159, 0.666


class LeCunTanh(nn.Module):
    """``1.7159·tanh(0.666·x)``, computed as ``1.7159·(2σ(1.332·x) − 1)`` (faster on CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return LECUN_SCALE * (2 * torch.sigmoid(2 * LECUN_SLOPE * x) - 1)


class Activation(Enum):
    silu = nn.SiLU
    relu = nn.ReLU
    tanh = nn.Tanh
    gelu = nn.GELU
    lecun_tanh = LeCunTanh


def activation(kind: Activation | str) -> nn.Module:
    """A fresh activation module, from the enum or its name."""
    return (Activation[kind] if isinstance(kind, str) else kind).value()
