"""Memory of a benchmark: the peak tensor memory of one step, and a cap on the process's.

Peak memory is the largest amount of tensor memory allocated during one step above what was
allocated when it started (activations, gradients, optimizer temporaries). On CUDA it comes
from ``torch.cuda.max_memory_allocated``; on CPU from a dispatch mode
(:class:`LiveTensorBytes`) that adds up the storage each operator allocates and subtracts it
when freed, i.e. the same quantity without the caching allocator's rounding. The process's
RSS is not used: the C allocator keeps freed memory and reuses it.

On CPU the process's memory is capped (:func:`cap_memory`), so that an oversized model fails
alone instead of drawing a shared machine into swap or the out-of-memory killer.
"""

from __future__ import annotations

import resource
import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from cfc_bench.bench.probe import sync


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of tensor storage created inside the mode and still alive, and their peak.

    Every operator's outputs are seen; a storage that none of its inputs shares is a new
    allocation, counted until it is freed (views and in-place results are not).
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.sizes: dict[int, int] = {}

    def _freed(self, key: int) -> None:
        self.live -= self.sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        inputs = {
            id(t.untyped_storage())
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = id(storage)
            if key in inputs or key in self.sizes:
                continue
            self.sizes[key] = storage.nbytes()
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._freed, key)
        return out


def peak_memory_mib(step: Callable[[], None], device: torch.device) -> float:
    """Peak tensor memory (MiB) of one call of ``step`` above that allocated at its start."""
    if device.type == "cuda":
        sync(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - start) / 2**20
    with LiveTensorBytes() as tracker:
        step()
    return tracker.peak / 2**20


def cap_memory(limit_gb: float | None) -> None:
    """Bound this process's private writable memory (``RLIMIT_DATA``: heap and anonymous
    maps, not the address space merely reserved) to ``limit_gb`` above its present use
    (None: 3/4 of the memory available now), so that an oversized model fails alone instead
    of drawing the machine into swap or the out-of-memory killer. Linux only."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    if limit_gb is None:
        meminfo = dict(
            line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines()
        )
        limit_gb = int(meminfo["MemAvailable"].split()[0]) / 2**20 * 0.75
    used = int(status["VmData"].split()[0]) * 1024
    limit = used + int(limit_gb * 2**30)
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = min([limit] + [v for v in (soft, hard) if v != resource.RLIM_INFINITY])
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
