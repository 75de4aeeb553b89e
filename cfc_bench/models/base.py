"""The interface every sequence model shares.

A model reads inputs ``x [B,T,I]``, the elapsed time since the previous step
``dt [B,T]`` and a validity mask ``mask [B,T]`` (True on real steps, False on padding
after the last real step), and returns outputs for every step ``[B,T,O]`` or for the
last valid step of each sequence ``[B,O]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import MISSING
from torch import nn

from cfc_bench.ranges import ranged


@dataclass(frozen=True)
class SequenceIO:
    """What a task tells a model about its data."""

    input_size: int
    output_size: int
    # True when x is [values ; observed-mask] halves (PhysioNet), for models such as
    # GRU-D that treat missing values explicitly; other models ignore it.
    values_with_mask: bool = False


@dataclass
class ModelConfig:
    """Base schema of ``conf/model/*.yaml``; each model module subclasses it."""

    name: str = MISSING  # the label results are grouped by (cfc, cfc_nogate, lstm, ...)
    hidden: int = ranged(64, ge=1)

    def build(self, io: SequenceIO) -> SequenceModel:
        raise NotImplementedError(f"{type(self).__name__} does not define build()")


def last_steps(mask: torch.Tensor) -> torch.Tensor:
    """``[B]``: the last True step of each ``mask[b]`` (step 0 if none)."""
    steps = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), steps, torch.zeros_like(steps)).amax(dim=1)


def last_valid(seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pick ``seq[b, t_b]`` where ``t_b`` is the last True step of ``mask[b]`` (step 0 if none)."""
    return seq[torch.arange(seq.shape[0], device=seq.device), last_steps(mask)]


def with_elapsed(x: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """``[x ; dt]``, ``[B,T,I+1]``: the elapsed time as one more input, for models with no
    other place for it (the CfC paper's convention for its discrete-time baselines)."""
    return torch.cat([x, dt.to(x.dtype).unsqueeze(-1)], dim=-1)


class SequenceModel(nn.Module):
    """Runs a recurrence over time (``states``) and a linear readout of its state."""

    def __init__(self, io: SequenceIO, state_size: int):
        super().__init__()
        self.io = io
        self.readout = nn.Linear(state_size, io.output_size)

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden state after every step, ``[B,T,state_size]``."""
        raise NotImplementedError

    def last_states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """State after each sequence's last valid step, ``[B,state_size]``; a model may
        compute it without a gradient for every step's state."""
        return last_valid(self.states(x, dt, mask), mask)

    def auxiliary_loss(self) -> torch.Tensor | None:
        """A scalar the trainer adds to the task's loss, computed by the last forward pass in
        training mode (the ELBO terms of a generative model, say); None (the default) for
        none. A model returns None after a forward pass in evaluation mode."""
        return None

    def kernels(self) -> list[nn.Parameter]:
        """The weight matrices that a Keras kernel regulariser penalises
        (``trainer.l2_kernel``): by default every parameter of two or more dimensions outside
        the readout (the references regularise the cell, not the output layer); biases and
        vectors are never kernels. A model whose reference regularises fewer narrows it."""
        return [
            p
            for name, p in self.named_parameters()
            if p.dim() >= 2 and not name.startswith("readout.")
        ]

    def after_step(self) -> None:
        """Called by the trainer after every optimizer step; a model that constrains its
        parameters by projection (weight clipping) does it here. Nothing by default."""

    def forward(
        self,
        x: torch.Tensor,
        dt: torch.Tensor,
        mask: torch.Tensor,
        return_sequences: bool = False,
    ) -> torch.Tensor:
        """Outputs ``[B,T,O]`` (``return_sequences``) or ``[B,O]`` at each last valid step.

        Padded steps (``mask`` False) enter the recurrence as zeros, whatever they hold: a
        NaN or inf there would otherwise reach every parameter's gradient (the backward pass
        multiplies its zero weight by it), though no output depends on it.
        """
        x = torch.where(mask.unsqueeze(-1), x, x.new_zeros(()))
        dt = torch.where(mask, dt, dt.new_zeros(()))
        if return_sequences:
            return self.readout(self.states(x, dt, mask))
        return self.readout(self.last_states(x, dt, mask))
