"""ncps' CfC and LTC as benchmark rows (``ncps_cfc``, ``ncps_ltc``), configured like our ``cfc``
and ``ltc``.

ncps' sequence wrappers squeeze the elapsed times to ``[B]``, which broadcasts them across
units when ``B == H`` and fails otherwise, so :class:`NcpsSequence` drives ncps' cells with the
same step loop as its wrappers (``return_sequences=False``, a linear output layer) but with
``ts`` shaped ``[B,1]``: the maths of our models, weight for weight
(tests/test_parity_ncps.py). ncps is a dev dependency: :func:`ncps_available` says whether
it is installed.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import torch
from torch import nn

from cfc_bench.bench import BenchError
from cfc_bench.models.base import ModelConfig
from cfc_bench.models.cfc import CfCConfig, HeadActivation
from cfc_bench.models.ltc import LTCConfig

MIRRORS = {"ncps_cfc": "cfc", "ncps_ltc": "ltc"}  # ncps row -> the config it copies


class NcpsSequence(nn.Module):
    """An ncps cell driven by ncps' wrapper loop, with elapsed time ``[B,1]`` per sample."""

    def __init__(self, cell: nn.Module, lstm: nn.Module | None, hidden: int, outputs: int):
        super().__init__()
        self.cell, self.lstm, self.hidden = cell, lstm, hidden
        self.fc = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden)
        c = torch.zeros_like(h) if self.lstm is not None else None
        for t in range(x.shape[1]):
            inputs, ts = x[:, t], dt[:, t].unsqueeze(-1)  # ncps: timespans[:, t].squeeze()
            if self.lstm is not None:
                h, c = self.lstm(inputs, (h, c))
            h_out, h = self.cell.forward(inputs, h, ts)
        return self.fc(h_out)


def ncps_model(cfg: ModelConfig, inputs: int, outputs: int = 1) -> nn.Module:
    """ncps' counterpart of our ``cfc`` or ``ltc`` config."""
    import ncps.torch as nt
    from ncps.torch.cfc_cell import LeCun
    from ncps.torch.lstm import LSTMCell
    from ncps.wirings import FullyConnected

    def value(v: Any) -> Any:
        return v.name if isinstance(v, Enum) else v

    if isinstance(cfg, CfCConfig):
        cell = nt.CfCCell(
            inputs,
            cfg.hidden,
            value(cfg.mode),
            value(cfg.backbone_activation),
            cfg.backbone_units,
            cfg.backbone_layers,
            cfg.backbone_dropout,
        )
        if HeadActivation(cfg.head_activation) is HeadActivation.lecun_tanh:
            cell.tanh = LeCun()  # ncps applies cell.tanh to its heads only
        lstm = LSTMCell(inputs, cfg.hidden) if cfg.mixed_memory else None
        return NcpsSequence(cell, lstm, cfg.hidden, outputs)
    if not isinstance(cfg, LTCConfig):
        raise BenchError(f"ncps has no counterpart of the {type(cfg).__name__} schema")
    cell = nt.LTCCell(
        FullyConnected(cfg.hidden),
        inputs,
        input_mapping=value(cfg.input_mapping),
        output_mapping=value(cfg.output_mapping),
        ode_unfolds=cfg.ode_unfolds,
        epsilon=cfg.epsilon,
        implicit_param_constraints=True,  # as ncps.torch.LTC
    )
    return NcpsSequence(cell, None, cfg.hidden, outputs)


def ncps_available() -> bool:
    try:
        import ncps.torch  # noqa: F401
    except ImportError:
        return False
    return True
