"""The fused CfC loop (cfc_loop.Recurrence, scripted and in Python) against the plain autograd
reference step of cfc.py: outputs and every gradient, each mode (float64; float32 for the
backbone activations, as training runs)."""

from __future__ import annotations

import pytest
import torch
from test_cfc_grad import N_IN, B, T, build, inputs  # tests/ is on the path

from cfc_bench.models.base import last_valid
from cfc_bench.models.cfc import CfCMode, HeadActivation

# the loop's per-step rounding differs from the reference's (fused products, σ for tanh)
TOL = {torch.float64: {"atol": 1e-12, "rtol": 1e-10}, torch.float32: {"atol": 1e-5, "rtol": 1e-4}}


def compare(model, ragged: bool = False, dtype: torch.dtype = torch.float64) -> None:
    """Loop and reference give the same states (every step, or each sample's last valid one)
    and the same gradients of the inputs and of every cell parameter."""
    model = model.to(dtype)
    x, dt, mask = inputs()
    x, dt = x.to(dtype), dt.to(dtype)
    if ragged:
        mask = torch.arange(T).expand(B, T) < torch.tensor([[T], [2], [1]])
    x = x.requires_grad_()
    params = [x, *(p for n, p in model.named_parameters() if not n.startswith("readout"))]
    results = []
    for fused in (True, False):
        torch.manual_seed(5)  # the same dropout draws in both
        if fused:
            states = model.states(x, dt, mask) if not ragged else model.last_states(x, dt, mask)
        else:
            states = model.reference_states(x, dt)
            states = states if not ragged else last_valid(states, mask)
        weights = torch.linspace(-1.0, 2.0, states.numel(), dtype=states.dtype)
        loss = (states * weights.view_as(states)).sum() + states.square().sum()
        results.append([states, *torch.autograd.grad(loss, params)])
    for fused, reference in zip(*results, strict=True):
        torch.testing.assert_close(fused, reference, **TOL[dtype])


@pytest.mark.parametrize("script", [True, False], ids=["scripted", "python"])
@pytest.mark.parametrize("mode", ["default", "no_gate", "pure"])
@pytest.mark.parametrize("mixed", [False, True], ids=["plain", "mixed_memory"])
@pytest.mark.parametrize("layers", [0, 1, 2])
def test_loop_matches_the_reference_step(mode: str, mixed: bool, layers: int, script: bool):
    compare(build(mode=CfCMode(mode), mixed_memory=mixed, backbone_layers=layers, script=script))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("activation", ["silu", "relu", "tanh", "gelu", "lecun_tanh"])
@pytest.mark.parametrize("layers", [1, 2])
def test_every_backbone_activation_matches_the_reference(
    activation: str, layers: int, dtype: torch.dtype
) -> None:
    """float32 too, as training runs: there aten's gelu.out leaves a strided output (the
    loop's layer buffer) unwritten, which zeroed the backbone of every gelu preset."""
    compare(build(backbone_layers=layers, backbone_activation=activation), dtype=dtype)


@pytest.mark.parametrize("mode", ["default", "no_gate"])
def test_lecun_heads_match_the_reference(mode: str) -> None:
    compare(build(mode=CfCMode(mode), head_activation=HeadActivation.lecun_tanh))


@pytest.mark.parametrize("first", [False, True], ids=["ncps_placement", "every_layer"])
def test_dropout_matches_the_reference_with_the_same_draws(first: bool) -> None:
    compare(build(backbone_layers=2, backbone_dropout=0.4, dropout_first_layer=first).train())


@pytest.mark.parametrize("mode", ["default", "pure"])
@pytest.mark.parametrize("mixed", [False, True], ids=["plain", "mixed_memory"])
def test_last_valid_states_match_the_reference(mode: str, mixed: bool) -> None:
    compare(build(mode=CfCMode(mode), mixed_memory=mixed), ragged=True)


def test_reference_reads_the_input() -> None:
    """The comparison is not vacuous: the states depend on x and on dt."""
    model = build(backbone_layers=1, backbone_activation="gelu")
    x, dt, _ = inputs()
    base = model.reference_states(x, dt)
    assert (model.reference_states(x + 1, dt) - base).abs().max() > 1e-3
    assert (model.reference_states(x, dt * 2) - base).abs().max() > 1e-3
    assert N_IN == x.shape[2]
