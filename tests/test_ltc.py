"""LTC against ncps' LTCCell, weight for weight, and the properties its parametrisation promises.

ncps' sequence wrapper squeezes the elapsed time to ``[B]``, which broadcasts across units
when the batch size equals the hidden size (and fails otherwise), so the tests drive the ncps
cell step by step with elapsed time shaped ``[B,1]``, as intended.

Intended deviation from ncps: ncps adds ``epsilon`` to ``cm/h + gleak + ...`` (h = dt/unfolds);
we multiply the step through by ``h`` and add ``epsilon`` once, so that ``dt = 0`` keeps the
state (ncps divides by zero there). The denominators differ by ``epsilon·(1 − h)``, a relative
1e-8, far inside the 1e-5 tolerance (test_zero_elapsed_time_keeps_the_state covers dt = 0).
"""

from __future__ import annotations

import pytest
import torch
from ncps.torch import LTCCell
from ncps.wirings import FullyConnected

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.ltc import CONDUCTANCES, LTC, Flavour, LTCConfig, Mapping

N_IN, H, N_OUT, T = 3, 8, 2, 7
# Our parameter name -> ncps' (the rest are named alike).
NCPS_NAMES = {
    "input_map.weight": "input_w",
    "input_map.bias": "input_b",
    "output_map.weight": "output_w",
    "output_map.bias": "output_b",
}


def build(**overrides) -> LTC:
    """A float64 LTC, eager unless ``compile=True`` is passed."""
    torch.manual_seed(0)
    cfg = LTCConfig(**{"hidden": H, "compile": False, **overrides})
    return cfg.build(SequenceIO(N_IN, N_OUT)).double()


def ncps_twin(model: LTC, input_mapping: str, output_mapping: str) -> LTCCell:
    """An ncps cell (as ncps.torch.LTC builds it) holding ``model``'s weights."""
    cell = LTCCell(
        FullyConnected(H),
        N_IN,
        input_mapping=input_mapping,
        output_mapping=output_mapping,
        ode_unfolds=model.unfolds,
        epsilon=model.epsilon,
        implicit_param_constraints=True,
    ).double()
    theirs = dict(cell.named_parameters())
    assert bool((theirs["sparsity_mask"] == 1).all()), "fully connected wiring has no zero mask"
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("readout."):
                theirs[NCPS_NAMES.get(name, name)].copy_(p)
    return cell


def ncps_forward(cell: LTCCell, readout: torch.nn.Linear, x: torch.Tensor, dt: torch.Tensor):
    h = torch.zeros(x.shape[0], H, dtype=x.dtype)
    outs = []
    for t in range(x.shape[1]):
        out, h = cell(x[:, t], h, dt[:, t : t + 1])
        outs.append(readout(out))
    return torch.stack(outs, dim=1)


def irregular_batch(batch: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, T, N_IN, generator=g, dtype=torch.float64)
    dt = torch.rand(batch, T, generator=g, dtype=torch.float64) * 2 + 0.05
    return x, dt, torch.ones(batch, T, dtype=torch.bool)


@pytest.mark.parametrize(
    "input_mapping,output_mapping", [("affine", "affine"), ("linear", "none"), ("none", "linear")]
)
@pytest.mark.parametrize("batch", [H, 5], ids=["B==H", "B!=H"])
def test_ltc_matches_ncps(batch: int, input_mapping: str, output_mapping: str) -> None:
    model = build(input_mapping=Mapping(input_mapping), output_mapping=Mapping(output_mapping))
    with torch.no_grad():  # move the maps off their identity initialisation
        for p in [*model.input_map.values(), *model.output_map.values()]:
            p.add_(0.3 * torch.randn_like(p))
    cell = ncps_twin(model, input_mapping, output_mapping)
    readout = torch.nn.Linear(H, N_OUT).double()
    readout.load_state_dict(model.readout.state_dict())
    x, dt, mask = irregular_batch(batch)

    ours = model(x, dt, mask, return_sequences=True)
    theirs = ncps_forward(cell, readout, x, dt)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)

    ours.square().sum().backward()
    theirs.square().sum().backward()
    ncps_params = dict(cell.named_parameters())
    for name, p in model.named_parameters():
        if name.startswith("readout."):
            other = readout.get_parameter(name.removeprefix("readout."))
        else:
            other = ncps_params[NCPS_NAMES.get(name, name)]
        assert p.grad is not None and other.grad is not None, name
        torch.testing.assert_close(p.grad, other.grad, atol=1e-5, rtol=0, msg=name)


def test_compiled_step_matches_eager() -> None:
    eager = build()
    compiled = build(compile=True)
    compiled.load_state_dict(eager.state_dict())
    x, dt, mask = irregular_batch(5)
    outs = [m(x, dt, mask, return_sequences=True) for m in (eager, compiled)]
    torch.testing.assert_close(outs[1], outs[0], atol=1e-10, rtol=0)
    for out in outs:
        out.square().sum().backward()
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-10, rtol=0, msg=name)


def test_zero_elapsed_time_keeps_the_state() -> None:
    """dt = 0 (padding, simultaneous events) is the exact limit: no change, finite gradients."""
    model = build()
    x, dt, mask = irregular_batch(4)
    dt[:, 3:5] = 0.0
    x[:, 3:5] = 5.0  # an input held for no time has no effect
    out = model(x, dt, mask, return_sequences=True)
    torch.testing.assert_close(out[:, 3], out[:, 2], atol=1e-7, rtol=0)
    torch.testing.assert_close(out[:, 4], out[:, 2], atol=1e-7, rtol=0)
    assert (out[:, 5] - out[:, 4]).abs().max() > 1e-3  # time flows again afterwards
    out.square().sum().backward()
    assert all(p.grad.isfinite().all() for p in model.parameters())


def test_conductances_stay_positive_without_weight_clipping() -> None:
    """Optimizer steps that drive the raw conductance parameters negative leave the
    effective conductances positive, so each Euler step stays a convex combination of the
    state, vleak and the reversal potentials, with no apply_weight_constraints call."""
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(5):
        opt.zero_grad()
        sum(getattr(model, n).sum() for n in CONDUCTANCES).backward()
        opt.step()
    for name in CONDUCTANCES:
        raw = getattr(model, name)
        assert (raw < -3).all(), name  # the optimizer did push the raw values negative
    neurons = model.neurons()
    for g in (neurons.cm, neurons.gleak, neurons.recurrent.w, neurons.sensory.w):
        assert (g > 0).all()

    x, dt, mask = irregular_batch(4)
    v = model.states(x * 10, dt * 100, mask)  # output map is the identity at initialisation
    bound = max(model.vleak.abs().max(), model.erev.abs().max(), model.sensory_erev.abs().max())
    assert v.isfinite().all() and v.abs().max() <= bound + 1e-9


def test_batch_equal_to_hidden_does_not_broadcast_time_across_units() -> None:
    """Scaling one sample's elapsed time changes that sample's output only."""
    model = build()
    x, dt, mask = irregular_batch(H)
    base = model(x, dt, mask)
    dt2 = dt.clone()
    dt2[3] *= 5
    changed = (model(x, dt2, mask) - base).abs().amax(dim=1) > 1e-9
    assert changed.tolist() == [i == 3 for i in range(H)]


def test_config_file_holds_the_paper_defaults() -> None:
    cfg = compose(["model=ltc"]).model
    assert cfg == LTCConfig()
    assert (cfg.ode_unfolds, cfg.hidden, cfg.compile) == (6, 64, True)


def test_rejects_zero_unfolds() -> None:
    with pytest.raises(ValueError, match="ode_unfolds must be at least 1"):
        LTCConfig(ode_unfolds=0).build(SequenceIO(N_IN, N_OUT))


def cfc_repository_cell(
    model: LTC, x: torch.Tensor, dt: torch.Tensor, offset: float, output_map: bool
) -> torch.Tensor:
    """The LTCCell of raminmh/CfC (tf_cfc.py, torch_cfc.py) over the sequence, as written
    there: parameters used as they are (no softplus), ``cm_t = cm / ((dt + offset) / K)``,
    ``v = (cm_t·v + gleak·vleak + N) / (cm_t + gleak + D + epsilon)``."""
    p = dict(model.named_parameters())
    sig = lambda v, mu, sigma: torch.sigmoid(sigma * (v.unsqueeze(-1) - mu))  # noqa: E731
    v = torch.zeros(x.shape[0], H, dtype=x.dtype)
    outs = []
    for t in range(x.shape[1]):
        inputs = x[:, t] * p["input_map.weight"] + p["input_map.bias"]
        s_act = p["sensory_w"] * sig(inputs, p["sensory_mu"], p["sensory_sigma"])
        s_num, s_den = (s_act * p["sensory_erev"]).sum(1), s_act.sum(1)
        cm_t = p["cm"] / ((dt[:, t : t + 1] + offset) / model.unfolds)
        for _ in range(model.unfolds):
            w_act = p["w"] * sig(v, p["mu"], p["sigma"])
            num = cm_t * v + p["gleak"] * p["vleak"] + (w_act * p["erev"]).sum(1) + s_num
            den = cm_t + p["gleak"] + w_act.sum(1) + s_den
            v = num / (den + model.epsilon)
        outs.append(v * p["output_map.weight"] + p["output_map.bias"] if output_map else v)
    return torch.stack(outs, dim=1)


@pytest.mark.parametrize(
    "flavour,offset,output_map",
    [(Flavour.tensorflow, 1e-3, True), (Flavour.pytorch_reference, 1.0, False)],
)
def test_cfc_repository_flavours_follow_their_cells(
    flavour: Flavour, offset: float, output_map: bool
) -> None:
    mapping = Mapping.affine if output_map else Mapping.none
    model = build(flavour=flavour, output_mapping=mapping, ode_unfolds=3)
    with torch.no_grad():
        for p in [*model.input_map.values(), *model.output_map.values()]:
            p.add_(0.3 * torch.randn_like(p))
    x, dt, mask = irregular_batch(5)
    if flavour is Flavour.pytorch_reference:
        dt = dt - 0.7  # the paper protocol's negative elapsed times: (dt + 1) stays positive
    expected = cfc_repository_cell(model, x, dt, offset, output_map)
    states = model.states(x, dt, mask)
    torch.testing.assert_close(states, expected, atol=1e-7, rtol=0)
    states.square().sum().backward()
    assert all(p.grad.isfinite().all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("flavour", [Flavour.tensorflow, Flavour.pytorch_reference])
def test_cfc_repository_flavours_clip_conductances_after_each_step(flavour: Flavour) -> None:
    """Keras' NonNeg / the PyTorch cell's ReLU: negative conductances become 0 at
    after_step, the other parameters keep their signs; ncps' softplus needs no clipping."""
    model, ncps_model = build(flavour=flavour), build()
    for m in (model, ncps_model):
        with torch.no_grad():
            for p in m.parameters():
                p.sub_(2.0)
        m.after_step()
    for name in CONDUCTANCES:
        assert getattr(model, name).min() == 0.0, name
        assert getattr(ncps_model, name).max() < 0, name
    assert model.vleak.max() < 0 and model.mu.max() < 0


def test_cfc_repository_flavours_draw_polarities_with_even_odds() -> None:
    """P(+1) = 1/2 (the references' choice([-1, 1])), ncps' 2/3 by default."""
    for flavour, share in ((Flavour.tensorflow, 0.5), (Flavour.ncps, 2 / 3)):
        model = build(flavour=flavour, hidden=64)
        plus = (model.erev == 1).double().mean()
        assert abs(plus - share) < 0.03, flavour
        assert set(model.erev.unique().tolist()) == {-1.0, 1.0}


def test_polarity_seed_draws_ncps_wiring_polarities() -> None:
    """ncps' fully connected wiring draws with its own seed 1111; polarity_seed=1111 gives
    the same matrices, whatever the run's seed."""
    wiring = FullyConnected(H)
    cell = LTCCell(wiring, N_IN)
    for seed in (0, 7):
        torch.manual_seed(seed)
        model = LTCConfig(hidden=H, compile=False, polarity_seed=1111).build(SequenceIO(N_IN, 2))
        assert torch.equal(model.erev, cell.erev.detach())
        assert torch.equal(model.sensory_erev, cell.sensory_erev.detach())
    other = LTCConfig(hidden=H, compile=False, polarity_seed=1).build(SequenceIO(N_IN, 2))
    assert not torch.equal(other.erev, cell.erev.detach())
