"""The Latent ODE's objective and time handling against the reference's maths, worked out
here: KL of two Gaussians, the IWAE combination, the KL annealing, the ODE solved on the
batch's union of time stamps, and the backward ODE-RNN encoder."""

from __future__ import annotations

import math

import pytest
import torch

from cfc_bench.config import compose
from cfc_bench.models import rubanova
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.latent_ode import FIRST_STEP
from cfc_bench.models.rubanova import (
    euler,
    iwae_bound,
    kl_coefficient,
    normal_kl,
    solve_at_times,
)


def test_kl_of_a_gaussian_to_the_standard_normal() -> None:
    """KL(N(μ, σ²) ‖ N(0, 1)) = ln(1/σ) + (σ² + μ²)/2 − 1/2: μ = 1, σ = 2 gives ln ½ + 2."""
    got = normal_kl(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0]))
    assert got[0].item() == pytest.approx(math.log(0.5) + 2.0, rel=1e-6)
    assert got[1].item() == 0.0


def test_iwae_bound_by_hand() -> None:
    """run_models' VAE loss −logsumexp_k(L_k − c·KL): L = (−1, −2), KL 0.5, c 0.5."""
    got = iwae_bound(torch.tensor([-1.0, -2.0]), torch.tensor(0.5), 0.5)
    expected = math.log(math.exp(-1.25) + math.exp(-2.25))
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "step, expected",
    [
        (1, 0.0),
        (64 * 50 - 1, 0.0),
        (64 * 50, 0.0),
        (64 * 51, 1 - 0.993),
        (64 * 60 + 5, 1 - 0.993**10),
    ],
)
def test_kl_annealing_of_run_models(step: int, expected: float) -> None:
    """kl_coef = 0 while itr // num_batches < 50, then 1 − 0.993^(itr // num_batches − 50)."""
    assert kl_coefficient(step, 64, 50, 0.993) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("segment", [64, 2])
def test_solution_at_each_sequences_times_on_the_union_grid(
    segment: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dz/dt = A z from z0 at t = 0, read at each sequence's own times (padding repeats the
    last time), matches expm(t·A) z0 to the solver's tolerance, in one solve or in segments."""
    monkeypatch.setattr(rubanova, "SEGMENT", segment)
    torch.manual_seed(0)
    f = torch.nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        f.weight.copy_(torch.tensor([[-0.3, 1.0], [-1.0, -0.3]]))
    z0 = torch.randn(2, 3, 2, dtype=torch.float64)  # K = 2 samples, B = 3
    times = torch.tensor([[0.0, 0.4, 1.0], [0.0, 0.7, 0.7], [0.2, 0.5, 1.5]], dtype=torch.float64)
    got = solve_at_times(f, z0, times, rtol=1e-9, atol=1e-10)
    assert got.shape == (2, 3, 3, 2)
    a = f.weight.detach()
    for k in range(2):
        for b in range(3):
            for t in range(3):
                want = torch.linalg.matrix_exp(times[b, t] * a) @ z0[k, b]
                torch.testing.assert_close(got[k, b, t], want, rtol=1e-7, atol=1e-8)


def test_odernn_encoder_runs_backwards_from_the_last_valid_step() -> None:
    """Encoder_z0_ODE_RNN (run_backwards): −0.01 before the last step, −gap_{k+1} before
    step k, here with −gap_0 back to time 0; padding steps change nothing."""
    torch.manual_seed(0)
    cfg = compose(["model=latent_ode_ode", "model.hidden=3", "model.rec_dims=4"]).model
    model = cfg.build(SequenceIO(4, 2, values_with_mask=True)).double().eval()
    x = torch.rand(1, 5, 4, dtype=torch.float64)
    x[..., 2:] = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False, False]])
    gaps = torch.tensor([[0.05, 0.3, 0.01, 0.0, 0.0]], dtype=torch.float64)
    values = torch.where(x[..., 2:] > 0, x[..., :2], 0.0) * mask.unsqueeze(-1)
    inputs = torch.cat([values, x[..., 2:] * mask.unsqueeze(-1)], -1)
    mean, std = model.encode(inputs, gaps, mask)
    m, f = cfg.min_step, model.rec_ode
    y, s = torch.zeros(1, 4, dtype=torch.float64), torch.zeros(1, 4, dtype=torch.float64)
    y = euler(f, y, torch.tensor([[-FIRST_STEP]], dtype=torch.float64), m)
    for k in (2, 1, 0):
        y, s = model.unit(y, s, inputs[:, k], torch.tensor([[True]]))
        y = euler(f, y, -gaps[:, k : k + 1], m)
    want_mean, want_std = model.to_z0(torch.cat([y, s], -1)).chunk(2, -1)
    torch.testing.assert_close(mean, want_mean)
    torch.testing.assert_close(std, want_std.abs())


def rnn_vae(**sizes: int) -> torch.nn.Module:
    overrides = [f"model.{k}={v}" for k, v in sizes.items()]
    cfg = compose(["model=rnn_vae", *overrides]).model
    return cfg.build(SequenceIO(4, 2, values_with_mask=True)).double()


def test_rnn_vae_decoder_is_fed_its_own_reconstructions() -> None:
    """RNN_VAE.get_reconstruction with run_rnn(feed_previous=True) and shift_outputs, worked
    out step by step: x̂_0 = x_first; h_1 = GRU([x_first ; 1 ; 0], z0); x̂_1 = D(z0);
    h_2 = GRU([D(h_1) ; 1 ; g_1], h_1); x̂_2 = D(h_1); x̂_3 = D(h_2)."""
    torch.manual_seed(0)
    model = rnn_vae(hidden=3, rec_dims=4)
    values = torch.rand(1, 4, 2, dtype=torch.float64)
    mask = torch.tensor([[True, True, True, False]])
    gaps = torch.tensor([[0.5, 0.1, 0.2, 0.0]], dtype=torch.float64)
    z0 = torch.randn(1, 1, 3, dtype=torch.float64)
    got = model.rnn_reconstruction(z0, values, gaps, mask)
    ones = torch.ones(1, 2, dtype=torch.float64)
    first = values[:, 2]  # the last valid step's values
    d, gru = model.decoder, model.gen_rnn

    def gap(value: float) -> torch.Tensor:
        return torch.tensor([[value]], dtype=torch.float64)

    h0 = z0[0]
    h1 = gru(torch.cat([first, ones, gap(0.0)], -1), h0)
    h2 = gru(torch.cat([d(h1), ones, gap(0.1)], -1), h1)
    want = torch.stack([first, d(h0), d(h1), d(h2)], 1)
    torch.testing.assert_close(got[0], want)


def test_rnn_vae_classifier_reads_the_mean_of_z0_in_training() -> None:
    """label_predictions = classifier(z0_mean): the training output is not a sample (the
    reconstruction is) and equals the evaluation output; the ELBO term is finite."""
    torch.manual_seed(0)
    model = rnn_vae(hidden=3, rec_dims=4)
    x = torch.rand(2, 5, 4, dtype=torch.float64)
    x[..., 2:] = (x[..., 2:] > 0.3).double()
    dt = torch.full((2, 5), 0.1, dtype=torch.float64)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    model.train()
    first = model(x, dt, mask, False)
    assert torch.isfinite(model.auxiliary_loss())
    second = model(x, dt, mask, False)
    model.eval()
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(first, model(x, dt, mask, False))
