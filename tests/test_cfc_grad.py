"""CfC's hand-written backward pass through time (cfc_loop.Recurrence) against finite differences.

``torch.autograd.gradcheck`` compares the analytic gradient of every parameter with central
differences in float64, for each mode, backbone depth, activation and the mixed-memory cell.
Dropout is random, so it is checked against ncps with the same random draws instead.
"""

from __future__ import annotations

import pytest
import torch
from ncps.torch import CfCCell
from test_parity_ncps import copy_into_ncps, ncps_forward  # tests/ is on the path

from cfc_bench.models.base import SequenceIO
from cfc_bench.models.cfc import CfCConfig, CfCMode, HeadActivation

B, T, N_IN, H, UNITS = 3, 4, 2, 3, 4


def build(**kw):
    torch.manual_seed(0)
    model = CfCConfig(hidden=H, backbone_units=UNITS, **kw).build(SequenceIO(N_IN, 2)).double()
    with torch.no_grad():  # Cf-S: w_tau starts at 0, where |w_tau| has no derivative
        for name, p in model.named_parameters():
            if name in ("A", "w_tau"):
                p.uniform_(-1.0, 1.0)
    return model


def inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, N_IN, generator=g, dtype=torch.float64)
    dt = torch.rand(B, T, generator=g, dtype=torch.float64) * 2 + 0.1
    return x, dt, torch.ones(B, T, dtype=torch.bool)


def check(model) -> None:
    x, dt, mask = inputs()
    names = [n for n, _ in model.named_parameters() if not n.startswith("readout")]
    params = tuple(dict(model.named_parameters())[n].detach().requires_grad_() for n in names)

    def states(*values):
        torch.manual_seed(0)  # the same dropout masks at every call
        return torch.func.functional_call(
            model, dict(zip(names, values, strict=True)), (x, dt, mask)
        )

    assert torch.autograd.gradcheck(states, params, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["default", "no_gate", "pure"])
@pytest.mark.parametrize("mixed", [False, True], ids=["plain", "mixed_memory"])
@pytest.mark.parametrize("layers", [0, 1, 2])
def test_gradients_of_every_mode(mode: str, mixed: bool, layers: int) -> None:
    check(build(mode=CfCMode(mode), mixed_memory=mixed, backbone_layers=layers))


@pytest.mark.parametrize("activation", ["silu", "relu", "tanh", "gelu", "lecun_tanh"])
def test_gradients_of_every_activation(activation: str) -> None:
    check(build(backbone_layers=2, backbone_activation=activation))


@pytest.mark.parametrize("mode", ["default", "no_gate"])
def test_gradients_with_lecun_heads(mode: str) -> None:
    check(build(mode=CfCMode(mode), backbone_layers=1, head_activation=HeadActivation.lecun_tanh))


def test_dropout_matches_ncps_with_the_same_random_draws() -> None:
    torch.manual_seed(0)
    cfg = CfCConfig(hidden=16, backbone_units=12, backbone_layers=3, backbone_dropout=0.3)
    model = cfg.build(SequenceIO(N_IN, 2)).double().train()
    cell = CfCCell(N_IN, 16, "default", "lecun_tanh", 12, 3, 0.3).double().train()
    readout = torch.nn.Linear(16, 2).double()
    copy_into_ncps(model, cell, None, readout)
    x = torch.randn(5, 6, N_IN, dtype=torch.float64)
    dt = torch.rand(5, 6, dtype=torch.float64) + 0.1
    torch.manual_seed(7)
    ours = model(x, dt, torch.ones(5, 6, dtype=torch.bool), return_sequences=True)
    torch.manual_seed(7)
    theirs = ncps_forward(cell, None, readout, x, dt)
    torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=0)
    ours.square().sum().backward()
    theirs.square().sum().backward()
    for a, b in zip(
        model.backbone, [m for m in cell.backbone if hasattr(m, "weight")], strict=True
    ):
        torch.testing.assert_close(a.weight.grad, b.weight.grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("layers", [1, 2])
def test_gradients_with_dropout_after_every_layer(layers: int) -> None:
    model = build(backbone_layers=layers, backbone_dropout=0.4, dropout_first_layer=True)
    check(model.train())


def test_dropout_first_layer_drops_first_layer_units() -> None:
    x, dt, mask = inputs()
    outputs = {}
    for first in (False, True):
        model = build(backbone_layers=1, backbone_dropout=0.5, dropout_first_layer=first).train()
        torch.manual_seed(3)
        outputs[first] = model(x, dt, mask, return_sequences=True)
        eval_out = model.eval()(x, dt, mask, return_sequences=True)
        if not first:  # one layer and ncps placement: dropout never applies
            torch.testing.assert_close(outputs[first], eval_out, atol=0, rtol=0)
    assert (outputs[True] - outputs[False]).abs().max() > 1e-3


def test_inference_gives_the_training_forward() -> None:
    model = build(backbone_layers=2, mixed_memory=True)
    x, dt, mask = inputs()
    with torch.no_grad():
        inferred = model(x, dt, mask, return_sequences=True)
    torch.testing.assert_close(model(x, dt, mask, return_sequences=True), inferred, atol=0, rtol=0)


@pytest.mark.parametrize("mode", ["default", "no_gate", "pure"])
@pytest.mark.parametrize("mixed", [False, True], ids=["plain", "mixed_memory"])
def test_python_loop_gives_the_scripted_results(mode: str, mixed: bool) -> None:
    """``script=False`` runs the same loop functions in Python: outputs and every gradient
    agree with TorchScript's to rounding, dropout (same random draws) included."""
    x, dt, mask = inputs()
    kw = {"mode": CfCMode(mode), "mixed_memory": mixed, "backbone_layers": 2}
    models = [build(**kw, backbone_dropout=0.3, script=script).train() for script in (True, False)]
    x = x.requires_grad_()
    grads = []
    for model in models:
        torch.manual_seed(5)
        out = model(x, dt, mask, return_sequences=True)
        grads.append([out, *torch.autograd.grad(out.square().sum(), [x, *model.parameters()])])
    for ours, theirs in zip(*grads, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)


@pytest.mark.parametrize("mixed", [False, True], ids=["plain", "mixed_memory"])
def test_last_valid_outputs_match_the_sequence_path(mixed: bool) -> None:
    """The loop's own pick of each sample's last valid state (ragged mask) gives the outputs
    and gradients of taking every step's state and picking afterwards."""
    x, dt, _ = inputs()
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    model = build(mixed_memory=mixed, backbone_layers=1)
    x = x.requires_grad_()
    picked = model(x, dt, mask)
    every = model(x, dt, mask, return_sequences=True)[torch.arange(B), mask.sum(1) - 1]
    torch.testing.assert_close(picked, every, atol=1e-14, rtol=0)
    params = [x, *model.parameters()]
    for a, b in zip(
        torch.autograd.grad(picked.square().sum(), params),
        torch.autograd.grad(every.square().sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_elapsed_time_with_a_gradient_is_refused() -> None:
    model = build()
    x, dt, mask = inputs()
    with pytest.raises(ValueError, match="dt.detach"):
        model(x, dt.requires_grad_(), mask)
