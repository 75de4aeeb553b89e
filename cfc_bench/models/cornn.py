"""coRNN, the coupled oscillatory RNN of Rusch & Mishra (ICLR 2021), as its reference code runs it.

A network of damped, driven nonlinear oscillators with positions ``y`` and velocities
``z = y'``, driven by the input ``u``:

  y'' = tanh(W y + 𝒲 y' + V u + b) − γ·y − ε·y'

discretised by the reference's implicit-explicit step of fixed size ``Δt`` (``dt`` here, the
scripts' ``--dt``; ``coRNNCell`` in github.com/tk-rusch/coRNN), velocity first, then the
position from the *new* velocity:

  z_n = z_{n−1} + Δt·(tanh(W y_{n−1} + 𝒲 z_{n−1} + V u_n + b) − γ·y_{n−1} − ε·z_{n−1})
  y_n = y_{n−1} + Δt·z_n

from ``y_0 = z_0 = 0``; the state read out is ``y``. ``Δt`` is a hyperparameter of the
scheme, one step per observation, as in the reference: the task's elapsed time is not the
step (XOR's and Walker2d's elapsed times, up to 1 and several raw steps, would take the
scheme far from the ``Δt`` it is stable at). The model has no other place for it, so the
elapsed time enters as one more input, ``u_n = [x_n ; elapsed_n]``, as the CfC paper gives
it to its discrete-time baselines. ``W, 𝒲, V, b`` are one ``nn.Linear`` over
``[u ; z ; y]`` with torch's initialisation, as the reference's ``i2h``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel, with_elapsed
from cfc_bench.ranges import ranged


@dataclass
class CoRNNConfig(ModelConfig):
    name: str = "cornn"
    hidden: int = ranged(64, ge=1)
    # the scheme's step Δt and the restoring and damping rates γ, ε (defaults: HAR-2/har2_task.py
    # of the reference, its one script with 64 units and sensor time series)
    dt: float = ranged(0.1, gt=0)
    gamma: float = ranged(0.2, ge=0)
    epsilon: float = ranged(6.4, ge=0)

    def build(self, io: SequenceIO) -> CoRNN:
        return CoRNN(self, io)


class CoRNN(SequenceModel):
    def __init__(self, cfg: CoRNNConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.inputs = io.input_size + 1  # [x ; elapsed]
        self.i2h = nn.Linear(self.inputs + 2 * cfg.hidden, cfg.hidden)  # [V 𝒲 W], b
        self.dt, self.gamma, self.epsilon = cfg.dt, cfg.gamma, cfg.epsilon

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weight = self.i2h.weight
        # V u + b for every step at once, out of the time loop
        drive = F.linear(with_elapsed(x, dt), weight[:, : self.inputs], self.i2h.bias).unbind(1)
        recurrent = weight[:, self.inputs :]  # [𝒲 W], read as [z ; y]
        y = z = x.new_zeros(x.shape[0], weight.shape[0])
        out = []
        for drive_t in drive:
            force = torch.tanh(drive_t + F.linear(torch.cat([z, y], dim=-1), recurrent))
            z = z + self.dt * (force - self.gamma * y - self.epsilon * z)
            y = y + self.dt * z
            out.append(y)
        return torch.stack(out, dim=1)
