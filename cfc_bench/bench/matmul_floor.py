"""The matrix-product floor of a step: the matrix products it issues, replayed alone.

A training step's time is its matrix products (BLAS) plus everything else: elementwise
kernels, reductions, Python and the autograd engine. :class:`MatmulRecorder` notes every
matrix product one real step issues (operator, shapes, strides, scalars), forward and
backward; :class:`MatmulReplay` then runs just those calls on random operands of the same
layout. Its time is what no implementation of the same maths in the same precision with
the same BLAS can go below, so ``step time / replay time`` bounds the speed-up any rewrite
can still give, and ``ncps time / our replay time`` the speed-up over ncps that is
possible at all. Operands of one layout are shared by all calls, so they stay in cache:
the floor errs low, never high. A step that runs products inside a fused kernel the
dispatcher does not show (``nn.LSTM``'s oneDNN or cuDNN kernels, :data:`FUSED_RNN_OPS`) has
no floor: :func:`record` returns None for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

aten = torch.ops.aten
MATMUL_OPS = frozenset(
    {
        aten.mm.default,
        aten.addmm.default,
        aten.addmm_.default,
        aten.bmm.default,
        aten.baddbmm.default,
        aten.mv.default,
        aten.addmv.default,
        aten.dot.default,
    }
)

# Fused recurrent kernels that do their matrix products out of the dispatcher's sight.
FUSED_RNN_OPS = frozenset(
    getattr(aten, name).default
    for name in (
        "mkldnn_rnn_layer",
        "mkldnn_rnn_layer_backward",
        "_cudnn_rnn",
        "_cudnn_rnn_backward",
        "miopen_rnn",
        "miopen_rnn_backward",
        "_thnn_fused_lstm_cell",
        "_thnn_fused_gru_cell",
    )
    if hasattr(aten, name)
)

Layout = tuple[tuple[int, ...], tuple[int, ...], torch.dtype, torch.device]


class Operand:
    """A tensor argument of a recorded call, kept as its layout only."""

    def __init__(self, t: torch.Tensor) -> None:
        self.layout: Layout = (tuple(t.shape), tuple(t.stride()), t.dtype, t.device)


class MatmulRecorder(TorchDispatchMode):
    """Records the matrix products issued while active: ``calls`` of (op, args, kwargs), and
    whether a fused recurrent kernel hid some (``hidden``)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, Any, Any]] = []
        self.hidden = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        self.hidden = self.hidden or func in FUSED_RNN_OPS
        if func in MATMUL_OPS:
            keep = lambda v: Operand(v) if isinstance(v, torch.Tensor) else v  # noqa: E731
            self.calls.append((func, tree_map(keep, args), tree_map(keep, kwargs)))
        return func(*args, **kwargs)


class MatmulReplay:
    """Runs recorded matrix products on random operands, one tensor per layout."""

    def __init__(self, calls: list[tuple[Any, Any, Any]], seed: int = 0) -> None:
        self.count = len(calls)
        generator = torch.Generator().manual_seed(seed)
        operands: dict[Layout, torch.Tensor] = {}

        def operand(v: Any) -> Any:
            if not isinstance(v, Operand):
                return v
            if v.layout not in operands:
                shape, stride, dtype, device = v.layout
                # One random storage just large enough for the layout (broadcast strides of
                # 0 included), viewed with the recorded shape and strides.
                size = 1 + sum((n - 1) * s for n, s in zip(shape, stride, strict=True) if n)
                base = torch.randn(size, generator=generator, dtype=dtype).to(device)
                operands[v.layout] = base.as_strided(shape, stride)
            return operands[v.layout]

        self.calls = [(f, tree_map(operand, a), tree_map(operand, k)) for f, a, k in calls]

    def __call__(self) -> None:
        for func, args, kwargs in self.calls:
            func(*args, **kwargs)


def record(step: Callable[[], Any]) -> list[tuple[Any, Any, Any]] | None:
    """The matrix products one call of ``step`` issues (forward, backward, optimizer), or
    None when a fused recurrent kernel did some out of sight."""
    with MatmulRecorder() as recorder:
        step()
    return None if recorder.hidden else recorder.calls
