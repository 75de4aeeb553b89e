"""GRU and LSTM cell updates from a pre-computed input projection.

The models hold a ``torch.nn.GRUCell`` / ``torch.nn.LSTMCell`` for its weights and
initialisation, project every step's input at once outside the time loop
(:func:`gru_input` / :func:`lstm_input`), and apply only the recurrent half per step
with the same maths as torch's cells (gate orders ``r, z, n`` and ``i, f, g, o``):

  GRU   r = σ(Wir x + bir + Whr h + bhr),  z = σ(Wiz x + biz + Whz h + bhz),
        n = tanh(Win x + bin + r·(Whn h + bhn)),  h' = (1 − z)·n + z·h
  LSTM  i, f, g, o = W_i x + b_i + W_h h + b_h,  c' = σ(f)·c + σ(i)·tanh(g),  h' = σ(o)·tanh(c')

:func:`keras_init` and :func:`lstm_biases` start the weights as the TensorFlow references'
cells (the LSTM baseline's ``init=keras``, the TensorFlow ODE-LSTM); :func:`keras_dense` is a
Keras ``Dense`` layer's weights (the ODE-LSTM paper's CT-GRU, GRU-ODE, RNN-decay cells).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def keras_init(weight_ih: torch.Tensor, weight_hh: torch.Tensor, *biases: torch.Tensor) -> None:
    """Keras' recurrent-cell defaults: glorot-uniform input weights, orthogonal recurrent
    weights, zero biases."""
    nn.init.xavier_uniform_(weight_ih)
    nn.init.orthogonal_(weight_hh)
    for bias in biases:
        bias.zero_()


@torch.no_grad()
def keras_dense(in_features: int, out_features: int, bias: float = 0.0) -> nn.Linear:
    """A Keras ``Dense(out_features)`` on ``in_features`` inputs: glorot-uniform kernel (one
    draw over the whole, possibly fused, input), constant bias (Keras' default: 0)."""
    layer = nn.Linear(in_features, out_features)
    nn.init.xavier_uniform_(layer.weight)
    layer.bias.fill_(bias)
    return layer


@torch.no_grad()
def lstm_biases(
    bias_ih: nn.Parameter, bias_hh: nn.Parameter, forget_bias: float, one_bias: bool
) -> None:
    """Add ``forget_bias`` to the forget gate (torch's gate order is ``i, f, g, o``); with
    ``one_bias``, train one bias vector as the Keras cell: ``b_hh`` folded into ``b_ih`` and
    frozen at zero (two trainable copies of one sum double the step an optimizer that
    normalises each weight's step, RMSprop or Adam, takes on it)."""
    hidden = bias_ih.shape[0] // 4
    bias_ih[hidden : 2 * hidden] += forget_bias
    if one_bias:
        bias_ih += bias_hh
        bias_hh.zero_()
    bias_hh.requires_grad_(not one_bias)


def gru_input(cell: nn.GRUCell, x: torch.Tensor) -> torch.Tensor:
    """``W_ih x + b_ih`` for inputs of any leading shape."""
    return F.linear(x, cell.weight_ih, cell.bias_ih)


def gru_step(cell: nn.GRUCell, x_proj: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``cell(x, h)`` given ``x_proj = gru_input(cell, x)``."""
    xr, xz, xn = x_proj.chunk(3, dim=-1)
    hr, hz, hn = F.linear(h, cell.weight_hh, cell.bias_hh).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return n + z * (h - n)


def lstm_input(cell: nn.LSTMCell, x: torch.Tensor) -> torch.Tensor:
    """``W_ih x + b_ih + b_hh`` (both biases folded in) for inputs of any leading shape."""
    return F.linear(x, cell.weight_ih, cell.bias_ih + cell.bias_hh)


def lstm_step(
    cell: nn.LSTMCell, x_proj: torch.Tensor, h: torch.Tensor, c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cell(x, (h, c))`` given ``x_proj = lstm_input(cell, x)``."""
    i, f, g, o = (x_proj + F.linear(h, cell.weight_hh)).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c
