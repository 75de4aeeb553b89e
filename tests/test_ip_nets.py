"""IP-Nets: the observation set, the RBF interpolants and the cross-channel layer by hand."""

from __future__ import annotations

import math

import pytest
import torch

from cfc_bench.models import ip_nets
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.ip_nets import IPNets, IPNetsConfig, hold_out
from cfc_bench.models.whole import ObservationSet, observation_set

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


def observations(model: IPNets, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor):
    return observation_set(x, dt, mask, model.io.values_with_mask)


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
        *observations(model, *one_sequence([0.0, 2.0], [[None], [0.7]]))
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
    smooth, transient, log_intensity = model.interpolants(*observations(model, x, dt, mask))
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
    smooth, transient, log_intensity = model.interpolants(*observations(model, x, dt, mask))
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


def test_hold_out_takes_a_fifth_of_each_channel_with_ten_or_more_observations() -> None:
    """The script's hold_out: int(0.2·count) of a channel's observations where that is more
    than one, drawn at random; never a slot without an observation."""
    torch.manual_seed(0)
    counts = {0: 10, 1: 9, 2: 15, 3: 24}  # held: 2, 0 (1 is not > 1), 3, 4
    channel = torch.cat([torch.full((n,), c) for c, n in counts.items()] + [torch.zeros(6)]).long()
    valid = torch.arange(len(channel)) < sum(counts.values())
    obs = ObservationSet(torch.zeros(len(channel)), channel, torch.zeros(len(channel)), valid,
                         torch.zeros(len(channel), dtype=torch.long))  # fmt: skip
    obs = ObservationSet(*(t.unsqueeze(0) for t in obs))
    draws = [hold_out(obs, 4, 0.2)[0] for _ in range(3)]
    for held in draws:
        assert not held[~valid].any()
        assert [int(held[channel == c].sum()) for c in range(4)] == [2, 0, 3, 4]
    assert not torch.equal(draws[0], draws[1])  # drawn afresh


def test_reconstruction_term_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """customloss with the held-out observation of channel 0 at step 1: χ read at the step
    times from the kept observations, (v − χ)² over that channel's held count, / D."""
    model = build(2, ref_points=3, time_span=2.0, dropout=0.0).train()
    with torch.no_grad():
        model.kernel.copy_(torch.tensor([0.3, -1.0], dtype=F64))
        model.cross.copy_(torch.tensor([[1.0, 0.5], [-0.25, 2.0]], dtype=F64))
    times = [0.0, 0.5, 1.5]
    x, dt, mask = one_sequence(times, [[1.0, 3.0], [2.5, 4.0], [-2.0, None]])
    # observations in (step, channel) order: (0,0) (0,1) (1,0) (1,1) (2,0); hold out (1,0)
    held = torch.tensor([[False, False, True, False, False]])
    monkeypatch.setattr(ip_nets, "hold_out", lambda obs, d, fraction: held)
    got = model.reconstruction_loss(*observations(model, x, dt, mask), dt, mask)
    alpha = [math.log1p(math.exp(k)) for k in (0.3, -1.0)]
    kept = {0: [(0.0, 1.0), (1.5, -2.0)], 1: [(0.0, 3.0), (0.5, 4.0)]}
    sigma, lam = [], []
    for t in times:
        w = {d: [math.exp(-alpha[d] * (s - t) ** 2) for s, _ in kept[d]] for d in (0, 1)}
        lam.append([sum(w[d]) for d in (0, 1)])
        weighted = [sum(wi * v for wi, (_, v) in zip(w[d], kept[d], strict=True)) for d in (0, 1)]
        sigma.append([weighted[d] / lam[-1][d] for d in (0, 1)])
    mu = [sum(sigma[k][d] for k in range(3)) / 3 for d in (0, 1)]
    p = model.cross.tolist()
    k = 1  # the held-out step
    u = [lam[k][d] / sum(lam[k]) * (sigma[k][d] - mu[d]) for d in (0, 1)]
    chi0 = u[0] * p[0][0] + u[1] * p[1][0] + mu[0]
    assert math.isclose(got.item(), (2.5 - chi0) ** 2 / 2, rel_tol=1e-10)
    model(x, dt, mask)  # training: the term is the model's auxiliary loss
    torch.testing.assert_close(model.auxiliary_loss(), got)
    model.eval()
    model(x, dt, mask)
    assert model.auxiliary_loss() is None
