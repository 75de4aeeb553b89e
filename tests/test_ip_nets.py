"""IP-Nets: the observation set, the RBF interpolants and the cross-channel layer by hand."""

from __future__ import annotations

import math

import torch

from cfc_bench.models.base import SequenceIO
from cfc_bench.models.ip_nets import IPNets, IPNetsConfig
from cfc_bench.models.whole import observation_set

F64 = torch.float64


def test_observation_set_lists_the_observed_values_in_step_order() -> None:
    # two channels; x = [values ; observed-mask]; the second sequence ends after step 1
    values = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[7.0, 8.0], [9.0, 0.5], [0, 0]]])
    flags = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 0.0], [1, 1]]])
    dt = torch.tensor([[0.0, 1.0, 2.0], [0.5, 1.0, 1.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    obs, d = observation_set(torch.cat([values, flags], -1), dt, mask, values_with_mask=True)
    assert d == 2
    assert obs.valid.tolist() == [[True] * 4, [True, False, False, False]]
    assert obs.channel[0].tolist() == [0, 0, 1, 1] and obs.channel[1, 0] == 1
    assert obs.value[0].tolist() == [1.0, 3.0, 4.0, 6.0] and obs.value[1].tolist() == [8, 0, 0, 0]
    assert obs.time[0].tolist() == [0.0, 1.0, 1.0, 3.0] and obs.time[1, 0] == 0.5


def build(channels: int, **overrides: float) -> IPNets:
    torch.manual_seed(0)
    cfg = IPNetsConfig(hidden=3, **overrides)
    return IPNets(cfg, SequenceIO(2 * channels, 2, values_with_mask=True)).double().eval()


def one_sequence(times: list[float], rows: list[list[float | None]]):
    """x, dt, mask of one sequence; ``None`` marks an unobserved value."""
    values = torch.tensor([[v if v is not None else 0.0 for v in row] for row in rows], dtype=F64)
    flags = torch.tensor([[float(v is not None) for v in row] for row in rows], dtype=F64)
    t = torch.tensor(times, dtype=F64)
    dt = torch.diff(t, prepend=t.new_zeros(1))
    return torch.cat([values, flags], -1)[None], dt[None], torch.ones(1, len(times), dtype=bool)


@torch.no_grad()
def test_a_single_observation_interpolates_to_its_value_with_a_gaussian_intensity() -> None:
    """σ = γ = v at every reference time, even 48 h away (e^(−log2·48²) underflows; the
    reference's log-domain sums do not), and log λ = −log 2 · (t − ρ)²."""
    model = build(1, ref_points=5, time_span=48.0)
    smooth, transient, log_intensity = model.interpolants(
        *one_sequence([0.0, 2.0], [[None], [0.7]])
    )
    rho = torch.linspace(0, 48, 5, dtype=F64)
    torch.testing.assert_close(smooth[0, :, 0], torch.full((5,), 0.7, dtype=F64))
    torch.testing.assert_close(transient[0, :, 0], torch.full((5,), 0.7, dtype=F64))
    torch.testing.assert_close(log_intensity[0, :, 0], -math.log(2) * (2.0 - rho) ** 2)


@torch.no_grad()
def test_two_observations_of_one_channel_by_hand() -> None:
    model = build(2, ref_points=3, time_span=2.0)
    model.kernel.copy_(torch.tensor([0.3, -1.0], dtype=F64))
    x, dt, mask = one_sequence([0.0, 0.5, 1.5], [[1.0, None], [None, 4.0], [-2.0, None]])
    smooth, transient, log_intensity = model.interpolants(x, dt, mask)
    alpha = math.log1p(math.exp(0.3))
    for r, rho in enumerate((0.0, 1.0, 2.0)):
        for kappa, got in ((1.0, smooth), (10.0, transient)):
            w0, w2 = (math.exp(-kappa * alpha * (t - rho) ** 2) for t in (0.0, 1.5))
            assert math.isclose(got[0, r, 0], (w0 * 1.0 + w2 * -2.0) / (w0 + w2), rel_tol=1e-12)
            assert math.isclose(got[0, r, 1], 4.0, rel_tol=1e-12)  # one observation
        lam = math.exp(-alpha * rho**2) + math.exp(-alpha * (1.5 - rho) ** 2)
        assert math.isclose(log_intensity[0, r, 0], math.log(lam), rel_tol=1e-12)


@torch.no_grad()
def test_cross_channel_layer_by_hand() -> None:
    """χ_r = (w_r ⊙ (σ_r − μ)) P + μ with w_r = λ_r / Σ_d λ_rd, μ = mean_r σ; the GRU reads
    [χ ; λ ; γ − χ]."""
    model = build(2, ref_points=3, time_span=2.0, dropout=0.0)
    model.cross.copy_(torch.tensor([[1.0, 0.5], [-0.25, 2.0]], dtype=F64))
    x, dt, mask = one_sequence([0.0, 0.5, 1.5], [[1.0, 3.0], [None, 4.0], [-2.0, None]])
    smooth, transient, log_intensity = model.interpolants(x, dt, mask)
    lam = log_intensity.exp()[0].tolist()
    s, g = smooth[0].tolist(), transient[0].tolist()
    mu = [sum(s[r][d] for r in range(3)) / 3 for d in range(2)]
    p = model.cross.tolist()
    z = []
    for r in range(3):
        w = [lam[r][d] / sum(lam[r]) for d in range(2)]
        u = [w[d] * (s[r][d] - mu[d]) for d in range(2)]
        chi = [u[0] * p[0][k] + u[1] * p[1][k] + mu[k] for k in range(2)]
        z.append(chi + lam[r] + [g[r][k] - chi[k] for k in range(2)])
    _, h = model.gru(torch.tensor([z], dtype=F64))
    torch.testing.assert_close(model.summary(x, dt, mask), h[0], rtol=1e-12, atol=1e-14)
