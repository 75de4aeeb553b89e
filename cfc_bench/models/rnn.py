"""LSTM and GRU baselines: PyTorch's fused recurrent layers, elapsed time as an extra input.

``init=torch`` keeps PyTorch's initialisation (every weight and bias uniform in ±1/√H).
``init=keras`` starts as the TensorFlow cells of the ODE-LSTM paper's scripts, whose
"augmented LSTM" rows the CfC paper copies: xavier-uniform input weights, orthogonal
recurrent weights, zero biases. ``forget_bias`` (LSTM) starts the forget gate's bias there;
the reference cell adds a constant 1.0 to a zero-initialised bias at every step, which has
the same outputs and gradients as a bias that starts at 1.0. ``one_bias`` (LSTM) trains one
bias vector, as the Keras cell (``cells.lstm_biases``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel, with_elapsed
from cfc_bench.models.cells import keras_init, lstm_biases
from cfc_bench.ranges import ranged


class RNNCell(Enum):
    lstm = nn.LSTM
    gru = nn.GRU


class RNNInit(Enum):
    torch = "torch"
    keras = "keras"


@dataclass
class RNNConfig(ModelConfig):
    name: str = "lstm"
    cell: RNNCell = RNNCell.lstm
    hidden: int = ranged(64, ge=1)
    init: RNNInit = RNNInit.torch
    forget_bias: float = 0.0  # LSTM only: initial forget-gate bias (added to torch's draw)
    one_bias: bool = False  # LSTM only: one trainable bias vector, as the Keras cell

    def build(self, io: SequenceIO) -> RNN:
        return RNN(self, io)


class RNN(SequenceModel):
    def __init__(self, cfg: RNNConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        cell = RNNCell[cfg.cell] if isinstance(cfg.cell, str) else cfg.cell
        if cfg.forget_bias and cell is not RNNCell.lstm:
            raise ValueError(
                f"model.forget_bias={cfg.forget_bias} needs model.cell=lstm (a GRU has no "
                "forget gate); leave it at 0"
            )
        if cfg.one_bias and cell is not RNNCell.lstm:
            raise ValueError(
                "model.one_bias=true needs model.cell=lstm (a GRU's b_hn sits inside its reset "
                "gate, so its two biases are not one); leave it false"
            )
        self.rnn = cell.value(io.input_size + 1, cfg.hidden, batch_first=True)
        rnn = self.rnn
        if RNNInit(cfg.init) is RNNInit.keras:
            keras_init(rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        if cell is RNNCell.lstm:
            lstm_biases(rnn.bias_ih_l0, rnn.bias_hh_l0, cfg.forget_bias, cfg.one_bias)

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(with_elapsed(x, dt))
        return out
