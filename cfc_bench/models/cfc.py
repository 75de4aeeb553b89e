"""Closed-form continuous-time networks (CfC): gated, no-gate, pure (Cf-S), mixed memory.

With ``z = backbone([x_t ; h_{t-1}])`` and heads ``f1, f2, ta, tb`` (one fused matrix):
  default  h = tanh(f1)·(1 − s) + s·tanh(f2),  s = sigmoid(ta·dt + tb)
  no_gate  h = tanh(f1) + s·tanh(f2)
  pure     h = −A·exp(−dt·(|w_tau| + |f1|))·f1 + A      (Cf-S, the direct solution)
With ``mixed_memory`` an LSTM cell first updates ``(h, c)`` from ``x_t`` and the CfC
update then reads the LSTM's output state (CfC-mmRNN).

Numerically equal to ``ncps.torch.CfC`` given the same weights (tests/test_parity_ncps.py),
except that ``dt`` is always ``[B,1]`` per sample, so a batch whose size equals the hidden
size never broadcasts time across units.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel


class LeCunTanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(0.666 * x)


class Activation(Enum):
    silu = nn.SiLU
    relu = nn.ReLU
    tanh = nn.Tanh
    gelu = nn.GELU
    lecun_tanh = LeCunTanh


class CfCMode(Enum):
    default = "default"
    no_gate = "no_gate"
    pure = "pure"


@dataclass
class CfCConfig(ModelConfig):
    name: str = "cfc"
    mode: CfCMode = CfCMode.default
    hidden: int = 64
    backbone_units: int = 128
    backbone_layers: int = 1
    backbone_activation: Activation = Activation.lecun_tanh
    backbone_dropout: float = 0.0
    mixed_memory: bool = False
    forget_bias: float = 1.0  # added to the LSTM forget gate of the mixed-memory cell
    init_gain: float | None = 1.0  # xavier-uniform gain of the cell's matrices; None = torch default

    def build(self, io: SequenceIO) -> CfC:
        return CfC(self, io)


def activation(kind: Activation | str) -> nn.Module:
    """A fresh activation module, from the enum or its name."""
    return (Activation[kind] if isinstance(kind, str) else kind).value()


class MixedMemoryLSTM(nn.Module):
    """The LSTM cell of CfC-mmRNN (as ncps' LSTMCell, with a configurable forget bias)."""

    def __init__(self, input_size: int, hidden: int, forget_bias: float):
        super().__init__()
        self.forget_bias = forget_bias
        self.input_map = nn.Linear(input_size, 4 * hidden)
        self.recurrent_map = nn.Linear(hidden, 4 * hidden, bias=False)
        nn.init.xavier_uniform_(self.input_map.weight)
        nn.init.uniform_(self.input_map.bias, -0.1, 0.1)
        nn.init.orthogonal_(self.recurrent_map.weight)

    def step(
        self, x_proj: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One update from the pre-computed input projection ``input_map(x_t)``."""
        i, ig, fg, og = (x_proj + self.recurrent_map(h)).chunk(4, dim=-1)
        c = c * torch.sigmoid(fg + self.forget_bias) + torch.tanh(i) * torch.sigmoid(ig)
        return torch.tanh(c) * torch.sigmoid(og), c


class CfC(SequenceModel):
    def __init__(self, cfg: CfCConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.mode = CfCMode(cfg.mode)
        hidden = cfg.hidden
        width = io.input_size + hidden
        layers = []
        for _ in range(cfg.backbone_layers):
            layers.append(nn.Linear(width, cfg.backbone_units))
            width = cfg.backbone_units
        self.backbone = nn.ModuleList(layers)
        self.act = activation(cfg.backbone_activation)
        # As in the reference code and ncps, dropout follows the second and later layers only.
        self.dropout = nn.Dropout(cfg.backbone_dropout)
        n_heads = 1 if self.mode is CfCMode.pure else 4  # [f1, f2, ta, tb] fused
        self.heads = nn.Linear(width, n_heads * hidden)
        if self.mode is CfCMode.pure:
            self.A = nn.Parameter(torch.ones(1, hidden))
            self.w_tau = nn.Parameter(torch.zeros(1, hidden))
        if cfg.init_gain is not None:
            # The reference code initialises every matrix of the cell, A and w_tau included.
            for p in self.parameters():
                if p.dim() == 2:
                    nn.init.xavier_uniform_(p, gain=cfg.init_gain)
        self.lstm = (
            MixedMemoryLSTM(io.input_size, hidden, cfg.forget_bias) if cfg.mixed_memory else None
        )

    def update(self, heads: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """New state from the heads' pre-activations and the elapsed time ``dt [B,1]``."""
        if self.mode is CfCMode.pure:
            return -self.A * torch.exp(-dt * (self.w_tau.abs() + heads.abs())) * heads + self.A
        f1, f2, ta, tb = heads.chunk(4, dim=-1)
        f1, f2 = torch.tanh(f1), torch.tanh(f2)
        s = torch.sigmoid(ta * dt + tb)
        if self.mode is CfCMode.no_gate:
            return f1 + s * f2
        return f1 * (1.0 - s) + s * f2

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, steps, n_in = x.shape
        first = self.backbone[0] if len(self.backbone) else self.heads
        # The input half of the first layer is applied to all steps at once, outside the loop;
        # unbind (not x[:, t]) keeps the backward pass from scattering into the whole sequence.
        x_proj = F.linear(x, first.weight[:, :n_in], first.bias).unbind(1)
        w_rec = first.weight[:, n_in:]
        dts = dt.to(x.dtype).unsqueeze(-1).unbind(1)
        lstm_in = self.lstm.input_map(x).unbind(1) if self.lstm is not None else None
        h = x.new_zeros(batch, self.readout.in_features)
        c = torch.zeros_like(h)
        out = []
        for t in range(steps):
            if lstm_in is not None:
                h, c = self.lstm.step(lstm_in[t], h, c)
            z = x_proj[t] + F.linear(h, w_rec)
            if len(self.backbone):
                z = self.act(z)
                for layer in self.backbone[1:]:
                    z = self.dropout(self.act(layer(z)))
                z = self.heads(z)
            h = self.update(z, dts[t])
            out.append(h)
        return torch.stack(out, dim=1)
