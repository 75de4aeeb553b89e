"""A causal Transformer encoder, for the Walker2d table's Transformer row (which names no code).

Each step's input and its elapsed time are embedded together, given the sinusoidal position
of Vaswani et al. (2017) for the step index ``t``, and passed through ``layers`` pre-norm
encoder layers (multi-head self-attention, then a ReLU feed-forward of ``feedforward`` units,
each a residual branch behind a LayerNorm) and a final LayerNorm:

  e_t = E·[x_t ; elapsed_t] + b + PE(t),   PE(t)_{2i} = sin(t/10000^{2i/d}),
                                           PE(t)_{2i+1} = cos(t/10000^{2i/d})
  a   = e + MHA(LN(e)),  s = a + FF(LN(a))        (per layer; attention of step t over 0..t)

The attention mask lets step ``t`` read steps ``0..t`` only, so the state at ``t`` (and each
per-step output) depends on no later input, and padding after a sequence's last valid step
reaches none of its valid steps; a classification reads the state at the last valid step.

Why this architecture: the paper gives none, so it follows the table's other models in size
(``hidden`` = d_model 64, the ``--size 64`` of the ODE-LSTM scripts) and stays cheap on a CPU:
2 layers, 4 heads of 16, a feed-forward of 128 (twice d_model rather than the usual four
times; Walker2d's 64-step windows and 17 inputs need little width), no dropout: the ODE-LSTM
scripts' baselines train without any, and on a CPU dropout of the attention weights costs
about as much as the rest of a training step (``dropout`` sets it, 0.1 is Vaswani et al.'s).
Pre-norm layers train without a learning-rate warm-up (Xiong et al. 2020,
"On Layer Normalization in the Transformer Architecture"), which the trainer does not have.
Positions are sinusoidal, so no maximum length is fixed in advance, and the elapsed time is
an input rather than the position, as the CfC paper gives it to its discrete-time baselines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel, with_elapsed
from cfc_bench.ranges import ranged


def sinusoidal_positions(steps: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """``PE [steps, width]`` of Vaswani et al.: sin on even features, cos on odd ones."""
    position = torch.arange(steps, dtype=like.dtype, device=like.device).unsqueeze(1)
    rate = torch.exp(
        torch.arange(0, width, 2, dtype=like.dtype, device=like.device)
        * (-math.log(10000.0) / width)
    )
    pe = like.new_zeros(steps, width)
    pe[:, 0::2] = torch.sin(position * rate)
    pe[:, 1::2] = torch.cos(position * rate[: width // 2])
    return pe


@dataclass
class TransformerConfig(ModelConfig):
    name: str = "transformer"
    hidden: int = ranged(64, ge=1)  # d_model
    layers: int = ranged(2, ge=1)
    heads: int = ranged(4, ge=1)  # must divide hidden
    feedforward: int = ranged(128, ge=1)  # units of each layer's feed-forward block
    dropout: float = ranged(0.0, ge=0, lt=1)

    def build(self, io: SequenceIO) -> Transformer:
        return Transformer(self, io)


class Transformer(SequenceModel):
    def __init__(self, cfg: TransformerConfig, io: SequenceIO):
        if cfg.hidden % cfg.heads:
            raise ValueError(
                f"model.heads={cfg.heads} must divide model.hidden={cfg.hidden} (each head "
                "attends over hidden/heads features); pick heads among its divisors"
            )
        super().__init__(io, cfg.hidden)
        self.embed = nn.Linear(io.input_size + 1, cfg.hidden)  # [x ; elapsed]
        layer = nn.TransformerEncoderLayer(
            cfg.hidden,
            cfg.heads,
            cfg.feedforward,
            cfg.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, cfg.layers, norm=nn.LayerNorm(cfg.hidden), enable_nested_tensor=False
        )

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        e = self.embed(with_elapsed(x, dt))
        e = e + sinusoidal_positions(steps, e.shape[-1], e)
        causal = nn.Transformer.generate_square_subsequent_mask(
            steps, device=x.device, dtype=e.dtype
        )
        return self.encoder(e, mask=causal, is_causal=True)
