"""Two process-wide CPU settings that make training steps faster without changing the maths.

**Retained freed memory** (glibc's malloc). By default glibc hands freed memory at the top of
its heap back to the kernel once it exceeds a threshold that adapts to past requests
(``M_TRIM_THRESHOLD``), and serves large requests with fresh maps (``M_MMAP_THRESHOLD``). A
training step that frees and re-allocates ``[T,B,·]`` buffers of megabytes then takes a page
fault, microseconds each, for every 4 KiB page it touches again (`cfc-bench bench` counts
them per step: ``train_faults``); with both thresholds fixed it takes almost none. The cost
is memory after a peak: the process keeps what it once used.

**Flushed subnormals** (``torch.set_flush_denormal``: the CPU's flush-to-zero and
denormals-are-zero modes). Gradients that vanish through time reach magnitudes below
1.2e-38, where each arithmetic operation takes a slow path (an elementwise kernel such as
``silu_backward`` runs several times slower on them). Flushed, such values are zero, which
no optimizer step can tell apart (Adam's ``eps`` is 1e-8). The mode is per thread and
inherited by threads created later, so it is set before torch starts its thread pool.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import torch

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed on 64-bit; larger requests still map
TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt's int takes: never trim in practice

_retained = False  # process-wide, and glibc cannot go back to its adaptive thresholds


def retain_freed_memory() -> bool:
    """Fix glibc's trim and map thresholds for this process; False where the C library has
    no ``mallopt`` that accepts them (not Linux, or not glibc)."""
    global _retained
    if not _retained and sys.platform.startswith("linux"):
        try:
            mallopt = ctypes.CDLL(None).mallopt  # the C library already in the process
        except (OSError, AttributeError):
            return False
        mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        _retained = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        )
    return _retained


def allocator_name(retain: bool) -> str:
    """Apply ``retain`` and name the allocator's state for timing records: ``retained`` or
    ``system`` (glibc's adaptive thresholds, or a C library without them)."""
    if retain:
        retain_freed_memory()
    return "retained" if _retained else "system"


def flush_denormal(enabled: bool) -> bool:
    """Set the CPU's flush-to-zero mode for this thread and the threads it starts; returns
    whether subnormals are now flushed (False where the CPU has no such mode)."""
    return torch.set_flush_denormal(enabled) and enabled


def apply(retain_freed: bool, flush: bool) -> dict[str, Any]:
    """Apply both settings, before torch's thread pool starts (its threads inherit the
    flush mode); returns them as timing records name them (``allocator``,
    ``flush_denormal``)."""
    return {"flush_denormal": flush_denormal(flush), "allocator": allocator_name(retain_freed)}
