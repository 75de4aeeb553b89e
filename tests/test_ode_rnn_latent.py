"""The Latent-ODE code's ODE-RNN pieces against its maths, worked out here by hand, and the
trainer's auxiliary-loss hook."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO, SequenceModel
from cfc_bench.models.rubanova import (
    GRUUnit,
    euler,
    euler_substeps,
    gaussian_log_likelihood,
    mlp,
    ode_rnn_scan,
)
from cfc_bench.run.job import train
from cfc_bench.run.trainer import make_optimizer


def np_mlp(net: torch.nn.Sequential, v: np.ndarray) -> np.ndarray:
    """Linear-tanh-Linear with the module's weights, in numpy."""
    w1, b1 = net[0].weight.detach().numpy(), net[0].bias.detach().numpy()
    w2, b2 = net[2].weight.detach().numpy(), net[2].bias.detach().numpy()
    return np.tanh(v @ w1.T + b1) @ w2.T + b2


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def test_gru_unit_one_step_by_hand() -> None:
    """GRU_unit of lib/encoder_decoder.py: gates read [y ; s ; x], the candidate reads the
    reset mean and std, its std half taken in absolute value."""
    torch.manual_seed(0)
    unit = GRUUnit(latent=3, n_in=4, units=5).double()
    for p in unit.parameters():  # non-zero biases too
        torch.nn.init.normal_(p, 0.0, 0.5)
    rng = np.random.default_rng(1)
    y, x = rng.normal(size=(2, 3)), rng.normal(size=(2, 4))
    s = np.abs(rng.normal(size=(2, 3)))
    joint = np.concatenate([y, s, x], 1)
    u = sigmoid(np_mlp(unit.update_gate, joint))
    r = sigmoid(np_mlp(unit.reset_gate, joint))
    cand = np_mlp(unit.new_state, np.concatenate([y * r, s * r, x], 1))
    y_new = (1 - u) * cand[:, :3] + u * y
    s_new = np.abs((1 - u) * np.abs(cand[:, 3:]) + u * s)
    update = torch.tensor([[True], [False]])
    got_y, got_s = unit(*(torch.tensor(a) for a in (y, s, x)), update)
    np.testing.assert_allclose(got_y[0].detach().numpy(), y_new[0], rtol=1e-12)
    np.testing.assert_allclose(got_s[0].detach().numpy(), s_new[0], rtol=1e-12)
    # the second row observed nothing: its state is held
    np.testing.assert_array_equal(got_y[1].detach().numpy(), y[1])
    np.testing.assert_array_equal(got_s[1].detach().numpy(), s[1])


def reference_substeps(gap: float, m: float) -> int:
    """run_odernn: one Euler step below m, else linspace over max(2, int(gap/m)) points."""
    if gap < m:
        return 1
    return max(2, int(gap / m)) - 1


@pytest.mark.parametrize("gap", [0.0, 0.005, 0.02, 0.039, 0.04, 0.0599, 0.06, 0.11, 0.5, 1.0])
def test_euler_substep_count_is_the_references(gap: float) -> None:
    m = 0.02
    d = torch.tensor([[gap], [-gap]], dtype=torch.float64)
    assert euler_substeps(d, m).tolist() == [[reference_substeps(gap, m)]] * 2


def test_euler_takes_that_many_equal_steps_per_row() -> None:
    """For f(h) = A h, n Euler steps of d/n give (I + (d/n)·A)^n h0, each row its own n."""
    torch.manual_seed(0)
    f = torch.nn.Linear(2, 2, bias=False).double()
    a = f.weight.detach().numpy()
    h0 = np.array([[1.0, -0.5], [0.3, 0.8]])
    d = np.array([0.11, -0.5])  # 4 and 24 sub-steps of m = 0.02
    got = euler(f, torch.tensor(h0), torch.tensor(d).unsqueeze(-1), 0.02).detach().numpy()
    for row, (h, gap) in enumerate(zip(h0, d, strict=True)):
        n = reference_substeps(abs(gap), 0.02)
        step = np.eye(2) + (gap / n) * a
        np.testing.assert_allclose(got[row], np.linalg.matrix_power(step, n) @ h, rtol=1e-12)


def test_ode_rnn_holds_its_state_where_nothing_is_observed() -> None:
    """At a step with no observed feature the mean only follows the ODE and the std is held."""
    torch.manual_seed(0)
    latent, d = 3, 2
    unit = GRUUnit(latent, 2 * d, 8).double()
    f = mlp(latent, latent, 2, 8).double()
    for p in f.parameters():
        torch.nn.init.normal_(p, 0.0, 0.5)
    x = torch.randn(1, 3, 2 * d, dtype=torch.float64)
    x[..., d:] = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])  # step 1: nothing
    x[:, 1, :d] = 0.0
    dur = torch.tensor([[0.0, 0.1, 0.05]], dtype=torch.float64)
    means, stds = ode_rnn_scan(unit, f, x, dur, 0.02, latent)
    evolved = euler(f, means[:, 0], dur[:, 1:2], 0.02)
    torch.testing.assert_close(means[:, 1], evolved, rtol=0, atol=0)
    torch.testing.assert_close(stds[:, 1], stds[:, 0], rtol=0, atol=0)
    assert not torch.equal(means[:, 2], euler(f, means[:, 1], dur[:, 2:3], 0.02))


def test_masked_gaussian_likelihood_by_hand() -> None:
    """Per feature the mean over its observed steps of log N(x; x̂, σ²); a feature never
    observed counts 0; then the mean over features (lib/likelihood_eval.py)."""
    sigma = 0.5
    values = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    observed = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    pred = torch.tensor([[[0.0, 9.0], [2.5, 9.0], [7.0, 9.0]]], dtype=torch.float64)
    c = -math.log(sigma) - 0.5 * math.log(2 * math.pi)
    feature_0 = ((-0.5 * (1.0 / sigma) ** 2 + c) + (-0.5 * (0.5 / sigma) ** 2 + c)) / 2
    expected = (feature_0 + 0.0) / 2
    got = gaussian_log_likelihood(pred, values, observed, sigma)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_ode_rnn_latent_auxiliary_loss_only_in_training() -> None:
    cfg = compose(["model=ode_rnn_latent", "model.hidden=4"]).model
    model = cfg.build(SequenceIO(6, 2, values_with_mask=True)).double()
    x = torch.rand(2, 5, 6, dtype=torch.float64)
    x[..., 3:] = (x[..., 3:] > 0.5).double()
    dt, mask = torch.full((2, 5), 0.1, dtype=torch.float64), torch.ones(2, 5, dtype=torch.bool)
    model.train()
    model(x, dt, mask)
    aux = model.auxiliary_loss()
    assert aux is not None and aux.ndim == 0 and torch.isfinite(aux)
    model.eval()
    model(x, dt, mask)
    assert model.auxiliary_loss() is None


def test_trainer_adds_the_models_auxiliary_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A constant auxiliary loss has no gradient: training takes the same steps, and each
    epoch's training loss is higher by exactly that constant."""
    overrides = [
        "task=xor",
        "task.train_samples=64",
        "task.test_samples=64",
        "trainer.epochs=2",
        "trainer.batch_size=32",
        "trainer.lr=0.01",
        "trainer.progress=false",
        "device=cpu",
        "model=lstm",
        "model.hidden=4",
    ]
    train(compose(overrides), tmp_path / "plain", experiment=None, config_yaml="x: 1\n")
    monkeypatch.setattr(SequenceModel, "auxiliary_loss", lambda self: torch.tensor(2.5))
    train(compose(overrides), tmp_path / "aux", experiment=None, config_yaml="x: 1\n")
    plain, aux = (pd.read_csv(tmp_path / n / "history.csv")["train_loss"] for n in ("plain", "aux"))
    np.testing.assert_allclose(aux - plain, 2.5, rtol=1e-6)


def test_adamax_and_a_floor_under_the_decayed_learning_rate(tmp_path: Path) -> None:
    """run_models.py: Adamax, its learning rate decayed but never below lr / 10."""
    overrides = [
        "task=xor",
        "task.train_samples=64",
        "task.test_samples=64",
        "trainer.epochs=4",
        "trainer.batch_size=32",
        "trainer.optimizer=adamax",
        "trainer.lr=0.01",
        "trainer.decay=0.5",
        "trainer.min_lr=0.003",
        "trainer.progress=false",
        "device=cpu",
        "model=lstm",
        "model.hidden=4",
    ]
    cfg = compose(overrides)
    assert isinstance(make_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))]), torch.optim.Adamax)
    train(cfg, tmp_path / "run", experiment=None, config_yaml="x: 1\n")
    lrs = pd.read_csv(tmp_path / "run" / "history.csv")["lr"].tolist()
    np.testing.assert_allclose(lrs, [0.01, 0.005, 0.003, 0.003])
