"""Clock readings on a device: :func:`sync`, which every timing needs first, and a fixed
reference workload timed beside every training run, the machine's own speed.

The tables divide epoch times of runs made hours or days apart, and a shared machine's speed
drifts (on this project's VM the same XOR CfC-mmRNN preset took 34 s per epoch one day and
57 s another). A run records the time of this workload at every start and after its last
epoch (``time/probe_ms``, the median), so that the tables can tell a slower machine from a
slower model. The workload is a small recurrent loop with its backward pass, like the models
(matrix products of tens to hundreds of units and per-step elementwise kernels), and uses its
own random generator, so that it leaves the run's random streams untouched.
"""

from __future__ import annotations

import statistics
import time

import torch

BATCH, HIDDEN, STEPS = 128, 128, 32


def sync(device: torch.device) -> None:
    """Wait for the device's queued kernels, so that a clock reading counts them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe_ms(device: torch.device, repeats: int = 3) -> float:
    """Median milliseconds of one forward and backward pass of the reference loop, after one
    warm-up pass, on ``device`` with the current thread count."""
    generator = torch.Generator().manual_seed(0)
    weight = (torch.randn(HIDDEN, HIDDEN, generator=generator) / HIDDEN**0.5).to(device)
    weight.requires_grad_(True)
    inputs = torch.randn(STEPS, BATCH, HIDDEN, generator=generator).to(device)
    times = []
    for _ in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        h = torch.zeros(BATCH, HIDDEN, device=device)
        for x_t in inputs:
            h = torch.tanh(torch.addmm(x_t, h, weight))
        h.sum().backward()
        sync(device)
        times.append(time.perf_counter() - start)
        weight.grad = None
    return 1000 * statistics.median(times[1:])
