"""Clock readings on a device: :func:`sync`, which every timing needs first, and a fixed
reference workload timed beside every training run, the machine's own speed.

The tables divide epoch times of runs made hours or days apart, and a shared machine's speed
drifts. A run times this workload several times at every start and after its last epoch, and
records the median of all those readings (``time/probe_ms``) and their spread
(``time/probe_spread``), so that the tables can tell a slower machine from a slower model,
and a real difference of machine speed from the noise of the readings. The workload is a
small recurrent loop with its backward pass, like the models (matrix products of tens to
hundreds of units and per-step elementwise kernels), and uses its own random generator, so
that it leaves the run's random streams untouched.

The spread of a set of readings is the ratio of its upper to its lower quartile: 1 when they
agree, 2 when the slower quarter took twice as long as the faster. Two probes' medians ``a``
and ``b`` differ by more than their readings' noise when ``a / b`` (or ``b / a``) exceeds the
product of their spreads: then their interquartile ranges are disjoint, since a lower quartile
is at least the median over the spread and an upper quartile at most the median times it
(:func:`supported`).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch

BATCH, HIDDEN, STEPS = 128, 128, 32
READINGS = 9  # per probe; a run probes at every start and after its last epoch


def sync(device: torch.device) -> None:
    """Wait for the device's queued kernels, so that a clock reading counts them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Probe:
    """Readings of the reference workload, in milliseconds."""

    readings: tuple[float, ...]

    @property
    def ms(self) -> float:
        """The median reading (NaN without readings)."""
        return statistics.median(self.readings) if self.readings else math.nan

    @property
    def spread(self) -> float:
        """Upper quartile over lower quartile (inclusive method), at least 1; NaN with fewer
        than two readings, whose spread is unknown."""
        if len(self.readings) < 2:
            return math.nan
        low, _, high = statistics.quantiles(self.readings, n=4, method="inclusive")
        return high / low


def probe(device: torch.device, readings: int = READINGS) -> Probe:
    """``readings`` timings (ms) of one forward and backward pass of the reference loop, after
    one warm-up pass, on ``device`` with the current thread count."""
    generator = torch.Generator().manual_seed(0)
    weight = (torch.randn(HIDDEN, HIDDEN, generator=generator) / HIDDEN**0.5).to(device)
    weight.requires_grad_(True)
    inputs = torch.randn(STEPS, BATCH, HIDDEN, generator=generator).to(device)
    times = []
    for _ in range(readings + 1):
        sync(device)
        start = time.perf_counter()
        h = torch.zeros(BATCH, HIDDEN, device=device)
        for x_t in inputs:
            h = torch.tanh(torch.addmm(x_t, h, weight))
        h.sum().backward()
        sync(device)
        times.append(1000 * (time.perf_counter() - start))
        weight.grad = None
    return Probe(tuple(times[1:]))


def supported(ratio: float, *spreads: float) -> bool:
    """Whether a machine ratio (one probe's median over another's) is more than the probes'
    own ``spreads`` can make: ``ratio`` or its inverse above their product. For a ratio to the
    mean of several probes, give the largest of their spreads as theirs. False where a spread
    is unknown (NaN: a single reading, or a run that recorded no spread)."""
    bound = math.prod(spreads)
    return not math.isnan(bound) and max(ratio, 1 / ratio) > bound
