"""The machine-speed probe: a positive time that leaves the run's random streams alone."""

from __future__ import annotations

import torch

from cfc_bench.bench.probe import probe_ms


def test_probe_times_the_workload_without_touching_the_global_random_stream() -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    first = probe_ms(torch.device("cpu"), repeats=1)
    assert torch.equal(torch.rand(3), expected)
    assert 0 < first < 10_000  # milliseconds, of a loop that takes a few on any CPU
