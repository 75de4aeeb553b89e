"""The machine-speed probe: several readings, their median and spread, and the rule for when
two probes show a real difference of machine speed."""

from __future__ import annotations

import math
import random
import statistics

import pytest
import torch

from cfc_bench.bench.probe import Probe, probe, supported


def test_probe_times_the_workload_without_touching_the_global_random_stream() -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    found = probe(torch.device("cpu"), readings=5)
    assert torch.equal(torch.rand(3), expected)
    assert len(found.readings) == 5
    assert all(0 < r < 10_000 for r in found.readings)  # ms, of a loop that takes a few
    assert found.ms == statistics.median(found.readings)
    assert found.spread >= 1


def test_median_and_spread_of_known_readings() -> None:
    # quartiles (inclusive method) of these eight: 10.75 and 20.25; the stray 95 moves neither
    readings = Probe((10.0, 11.0, 10.0, 12.0, 20.0, 20.0, 21.0, 95.0))
    assert readings.ms == 16.0
    assert readings.spread == pytest.approx(20.25 / 10.75)
    assert Probe((5.0, 5.0, 5.0)).spread == 1.0
    assert math.isnan(Probe((5.0,)).spread) and math.isnan(Probe(()).ms)


def test_a_machine_ratio_is_supported_only_beyond_the_spreads() -> None:
    # The demo's 79.6 ms against 6.4 ms: a 12x ratio is real when the readings agree ...
    assert supported(79.6 / 6.4, 1.1, 1.2)
    assert supported(6.4 / 79.6, 1.1, 1.2)  # either way round
    # ... and not when the readings of one side spread over more than that.
    assert not supported(79.6 / 6.4, 13.0, 1.0)
    assert not supported(1.3, 1.2, 1.1)  # 1.3 < 1.32
    assert not supported(12.0, math.nan, 1.0)  # a probe without a spread proves nothing


def test_disjoint_quartiles_whenever_supported() -> None:
    """The rule's promise, on random readings: supported -> interquartile ranges disjoint."""
    rng = random.Random(0)

    def quartiles(p: Probe) -> list[float]:
        return statistics.quantiles(p.readings, n=4, method="inclusive")

    def readings() -> Probe:  # a machine speed, seven readings up to 30 % slower
        speed = rng.uniform(1, 3)
        return Probe(tuple(speed * rng.uniform(1, 1.3) for _ in range(7)))

    found = 0
    for _ in range(500):
        a, b = readings(), readings()
        if supported(a.ms / b.ms, a.spread, b.spread):
            found += 1
            (a_low, _, a_high), (b_low, _, b_high) = quartiles(a), quartiles(b)
            assert a_low > b_high or b_low > a_high
    assert found > 50  # the check was exercised
    fast = Probe((6.0, 6.2, 6.4, 6.5, 7.0))  # quartiles 6.2, 6.5
    assert not supported(6.8 / 6.4, 7.2 / 6.4, fast.spread)  # 6.0 ... 8.0: 6.4 to 7.2 overlaps
    assert supported(10.0 / 6.4, 10.4 / 9.9, fast.spread)  # 9.5 ... 12.0: 9.9 to 10.4 does not
