"""GRU and LSTM cell updates from a pre-computed input projection.

The models hold a ``torch.nn.GRUCell`` / ``torch.nn.LSTMCell`` for its weights and
initialisation, project every step's input at once outside the time loop
(:func:`gru_input` / :func:`lstm_input`), and apply only the recurrent half per step
with the same maths as torch's cells (gate orders ``r, z, n`` and ``i, f, g, o``):

  GRU   r = σ(Wir x + bir + Whr h + bhr),  z = σ(Wiz x + biz + Whz h + bhz),
        n = tanh(Win x + bin + r·(Whn h + bhn)),  h' = (1 − z)·n + z·h
  LSTM  i, f, g, o = W_i x + b_i + W_h h + b_h,  c' = σ(f)·c + σ(i)·tanh(g),  h' = σ(o)·tanh(c')
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
