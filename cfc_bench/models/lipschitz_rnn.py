"""Lipschitz RNN of Erichson et al. (ICLR 2021), as its reference code runs it.

The state follows, with the input ``x`` held over a step,

  h' = A h + tanh(W h + U x + b)

where the hidden matrices are built from free matrices ``B, C`` with a skew level ``β`` and
a diffusion ``γ`` (the reference's ``LipschitzRNN`` in github.com/erichson/LipschitzRNN,
``models.py``):

  A = β·(B − Bᵀ) + (1 − β)·(B + Bᵀ) − γ·I,   W = β·(C − Cᵀ) + (1 − β)·(C + Cᵀ) − γ·I

so that A's symmetric part is ``(1 − β)·(B + Bᵀ) − γ·I`` and its skew part ``β·(B − Bᵀ)``:
``β = 1`` leaves ``A`` skew-symmetric up to ``−γ·I`` (every eigenvalue's real part is ``−γ``),
and for any β the real parts of A's eigenvalues are at most ``(1 − β)·λ_max(B + Bᵀ) − γ``.
One step of size ``ε`` (``eps``, the reference's ``--eps``) per observation, explicit Euler
as the reference's ``LipschitzRNN`` model,

  h_n = h_{n−1} + ε·(A h_{n−1} + tanh(W h_{n−1} + U x_n + b))

or ``solver=midpoint``, the RK2 step of its ODE variant. The reference multiplies row vectors
(``h @ A``); here ``h @ A`` likewise, so ``B, C`` are the reference's matrices. ``B, C`` start
as N(0, (init_std/H)²) draws, ``U, b`` with torch's ``nn.Linear`` initialisation (the
reference's current ``models.py``). ``ε`` is a fixed step, not the elapsed time (the same
argument as for coRNN, ``cornn.py``); the elapsed time enters as one more input
``x_n = [x_n ; elapsed_n]``, as the CfC paper gives it to its discrete-time baselines.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel, with_elapsed
from cfc_bench.models.solvers import FIXED_STEP, Solver, checked_solver
from cfc_bench.ranges import ranged


def lipschitz_matrix(free: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """``β·(M − Mᵀ) + (1 − β)·(M + Mᵀ) − γ·I`` of the free matrix ``M``."""
    eye = torch.eye(free.shape[0], dtype=free.dtype, device=free.device)
    return beta * (free - free.T) + (1 - beta) * (free + free.T) - gamma * eye


@dataclass
class LipschitzRNNConfig(ModelConfig):
    name: str = "lipschitz_rnn"
    hidden: int = ranged(64, ge=1)
    # defaults: the argparse defaults of the reference's driver.py
    eps: float = ranged(0.05, gt=0)  # step size ε
    beta: float = ranged(0.7, ge=0, le=1)  # skew level β
    gamma: float = ranged(0.001, ge=0)  # diffusion γ
    init_std: float = ranged(6.0, gt=0)  # B, C start as N(0, (init_std/hidden)²)
    solver: Solver = Solver.euler  # euler (the reference's LipschitzRNN) | midpoint (RK2)

    def build(self, io: SequenceIO) -> LipschitzRNN:
        return LipschitzRNN(self, io)


class LipschitzRNN(SequenceModel):
    def __init__(self, cfg: LipschitzRNNConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.step = FIXED_STEP[checked_solver(cfg.solver, 1, "lipschitz_rnn")]
        self.eps, self.beta, self.gamma = cfg.eps, cfg.beta, cfg.gamma
        self.input_map = nn.Linear(io.input_size + 1, cfg.hidden)  # U, b
        std = cfg.init_std / cfg.hidden
        self.B = nn.Parameter(torch.randn(cfg.hidden, cfg.hidden) * std)
        self.C = nn.Parameter(torch.randn(cfg.hidden, cfg.hidden) * std)

    def matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``A, W`` from ``B, C``."""
        return (
            lipschitz_matrix(self.B, self.beta, self.gamma),
            lipschitz_matrix(self.C, self.beta, self.gamma),
        )

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        A, W = self.matrices()  # once per sequence batch, as the reference
        drive = self.input_map(with_elapsed(x, dt)).unbind(1)  # U x + b, out of the loop
        eps = x.new_tensor(self.eps)
        h = x.new_zeros(x.shape[0], A.shape[0])
        out = []
        for drive_t in drive:

            def field(state: torch.Tensor, drive_t: torch.Tensor = drive_t) -> torch.Tensor:
                return state @ A + torch.tanh(state @ W + drive_t)

            h = self.step(field, h, eps)
            out.append(h)
        return torch.stack(out, dim=1)
