"""LSTM and GRU baselines: PyTorch's fused recurrent layers, elapsed time as an extra input."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel


class RNNCell(Enum):
    lstm = nn.LSTM
    gru = nn.GRU


@dataclass
class RNNConfig(ModelConfig):
    name: str = "lstm"
    cell: RNNCell = RNNCell.lstm
    hidden: int = 64

    def build(self, io: SequenceIO) -> RNN:
        return RNN(self, io)


class RNN(SequenceModel):
    def __init__(self, cfg: RNNConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        cell = RNNCell[cfg.cell] if isinstance(cfg.cell, str) else cfg.cell
        self.rnn = cell.value(io.input_size + 1, cfg.hidden, batch_first=True)

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(torch.cat([x, dt.to(x.dtype).unsqueeze(-1)], dim=-1))
        return out
