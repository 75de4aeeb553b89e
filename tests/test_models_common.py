"""Checks every model config in conf/model must pass: the model contract, and the shared
activations."""

from __future__ import annotations

import pytest
import torch

from cfc_bench.config import config_names
from cfc_bench.models import contract
from cfc_bench.models.layers import LECUN_SCALE, LECUN_SLOPE, Activation, activation

MODELS = config_names("model")


def test_every_model_is_listed() -> None:
    assert {"cfc", "lstm"} <= set(MODELS)


@pytest.mark.parametrize("check", list(contract.CHECKS))
@pytest.mark.parametrize("name", MODELS)
def test_model_contract(name: str, check: str) -> None:
    """The checks of :mod:`cfc_bench.models.contract`, which ``cfc-bench check-model NAME``
    runs on a plugin's model: shapes, causality, padding, padding and gradients."""
    contract.CHECKS[check](name)


# The reference-exact variants that a config value selects within one conf/model entry.
VARIANTS = {
    "cfc_mmrnn_tensorflow": ("cfc_mmrnn", ["model.coupling=tensorflow"]),
    "gru_d_odelstm": ("gru_d", ["model.variant=odelstm"]),
    "ltc_tensorflow": ("ltc", ["model.flavour=tensorflow", "model.compile=false"]),
    "ltc_pytorch_reference": (
        "ltc",
        ["model.flavour=pytorch_reference", "model.output_mapping=none", "model.compile=false"],
    ),
}


@pytest.mark.parametrize("check", list(contract.CHECKS))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_contract(variant: str, check: str) -> None:
    name, overrides = VARIANTS[variant]
    contract.CHECKS[check](name, overrides)


@pytest.mark.parametrize("kind", [a.name for a in Activation])
def test_shared_activations_give_their_function_and_gradient(kind: str) -> None:
    """Each shared activation (LeCun's tanh: 1.7159·tanh(0.666·x)) and its autograd gradient."""
    expected = {
        "silu": torch.nn.functional.silu,
        "relu": torch.relu,
        "tanh": torch.tanh,
        "gelu": torch.nn.functional.gelu,
        "lecun_tanh": lambda u: LECUN_SCALE * torch.tanh(LECUN_SLOPE * u),
    }[kind]
    x = torch.linspace(-3, 3, 13, dtype=torch.float64, requires_grad=True)
    ours, theirs = activation(kind)(x), expected(x)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(*(torch.autograd.grad(y.sum(), x)[0] for y in (ours, theirs)))
