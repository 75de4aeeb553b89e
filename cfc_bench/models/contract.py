"""The contract every sequence model keeps, as checks a model's author can run.

``cfc-bench check-model NAME [override ...]`` runs them on a built-in or plugin model
(``tests/test_models_common.py`` runs them on every built-in one). Each check builds the
model in float64 from its config (``model.hidden=8`` unless overridden) for ``I`` inputs
and ``O`` outputs, feeds ``B`` sequences of ``T`` steps whose first two end early (padding
after the last valid step), and raises ``AssertionError`` saying what broke:

- shapes: per-step outputs ``[B,T,O]``, last-valid outputs ``[B,O]``, with and without the
  ``[values ; observed-mask]`` input layout;
- causality: changing steps ``k..T-1`` (inputs and elapsed times) leaves every output before
  ``k`` unchanged, and does reach later outputs;
- padding: whatever padded steps hold, the last-valid outputs are unchanged, and each
  equals the per-step output at its sequence's last valid step;
- padding and gradients: NaN or inf in padded inputs and elapsed times gives exactly the
  outputs and parameter gradients of zero padding, all finite (in training mode, the same
  dropout draws), for per-step and last-valid outputs.

A model that reads whole sequences (attention, interpolation, set functions) keeps the same
checks: its per-step output is its output on each prefix (``cfc_bench/models/whole.py``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence

import torch

from cfc_bench.models.base import SequenceIO, SequenceModel

B, T, N_IN, N_OUT = 4, 9, 6, 3
LAST_VALID = (5, 2)  # sequences 0 and 1 end early; the others run all T steps
ATOL = 1e-12


def build(
    name: str, values_with_mask: bool = False, overrides: Sequence[str] = ()
) -> SequenceModel:
    """Model ``name`` (a ``model=`` option) in float64, eval mode, seeded."""
    from cfc_bench.config import compose

    torch.manual_seed(0)
    cfg = compose([f"model={name}", "model.hidden=8", *overrides]).model
    return cfg.build(SequenceIO(N_IN, N_OUT, values_with_mask)).double().eval()


def inputs(values_with_mask: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, N_IN, generator=g, dtype=torch.float64)
    if values_with_mask:
        x[..., N_IN // 2 :] = (x[..., N_IN // 2 :] > 0).double()  # observed-mask half
    dt = torch.rand(B, T, generator=g, dtype=torch.float64) + 0.1
    mask = torch.ones(B, T, dtype=torch.bool)
    for b, last in enumerate(LAST_VALID):
        mask[b, last + 1 :] = False
    return x, dt, mask


def check_shapes(name: str, overrides: Sequence[str] = ()) -> None:
    for values_with_mask in (False, True):
        model = build(name, values_with_mask, overrides)
        x, dt, mask = inputs(values_with_mask)
        per_step = tuple(model(x, dt, mask, return_sequences=True).shape)
        last = tuple(model(x, dt, mask).shape)
        layout = "values+mask" if values_with_mask else "plain"
        assert per_step == (B, T, N_OUT), (
            f"per-step outputs {per_step}, not {(B, T, N_OUT)} ({layout})"
        )
        assert last == (B, N_OUT), f"last-valid outputs {last}, not {(B, N_OUT)} ({layout})"


def check_causality(name: str, overrides: Sequence[str] = (), k: int = 5) -> None:
    model = build(name, overrides=overrides)
    x, dt, mask = inputs()
    base = model(x, dt, mask, return_sequences=True)
    x2, dt2 = x.clone(), dt.clone()
    x2[:, k:] += 1.0
    dt2[:, k:] *= 3.0
    moved = model(x2, dt2, mask, return_sequences=True)
    before = (moved[:, :k] - base[:, :k]).abs().max().item()
    assert before <= ATOL, f"changing steps {k}.. moved earlier outputs by {before:.3g}: not causal"
    after = (moved[:, k:] - base[:, k:]).abs().max().item()
    assert after > 1e-6, f"changing steps {k}.. left later outputs unchanged ({after:.3g})"


def check_padding(name: str, overrides: Sequence[str] = ()) -> None:
    model = build(name, overrides=overrides)
    x, dt, mask = inputs()
    base = model(x, dt, mask)
    x2, dt2 = x.clone(), dt.clone()
    x2[~mask] = 7.0
    dt2[~mask] = 5.0
    moved = (model(x2, dt2, mask) - base).abs().max().item()
    assert moved <= ATOL, f"padding values moved the last-valid outputs by {moved:.3g}"
    seq = model(x, dt, mask, return_sequences=True)
    for b, last in enumerate(LAST_VALID):
        gap = (base[b] - seq[b, last]).abs().max().item()
        assert gap <= ATOL, (
            f"sequence {b}: the last-valid output differs from the per-step output at its last "
            f"valid step {last} by {gap:.3g}"
        )


def check_padding_gradients(name: str, overrides: Sequence[str] = ()) -> None:
    model = build(name, overrides=overrides).train()
    x, dt, mask = inputs()
    for return_sequences in (False, True):
        for fill in (math.nan, math.inf):
            results = []
            for value in (0.0, fill):
                x2, dt2 = x.clone(), dt.clone()
                x2[~mask] = value
                dt2[~mask] = value
                model.zero_grad()
                torch.manual_seed(2)  # the same dropout draws in both passes
                out = model(x2, dt2, mask, return_sequences=return_sequences)
                out.square().sum().backward()
                grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
                results.append((out.detach(), grads))
            (zero_out, zero_grads), (out, grads) = results
            what = f"{fill} padding ({'per-step' if return_sequences else 'last-valid'} outputs)"
            assert zero_grads, "no parameter receives a gradient"
            assert torch.equal(out, zero_out), f"{what} changed the outputs"
            assert all(torch.isfinite(g).all() for g in grads), f"{what}: non-finite gradients"
            assert all(torch.equal(g, z) for g, z in zip(grads, zero_grads, strict=True)), (
                f"{what} changed the parameter gradients"
            )


CHECKS: dict[str, Callable[..., None]] = {
    "shapes": check_shapes,
    "causality": check_causality,
    "padding": check_padding,
    "padding-gradients": check_padding_gradients,
}


def main(argv: list[str]) -> int:
    """``cfc-bench check-model NAME [override ...]``: run every check, report each."""
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: cfc-bench check-model NAME [model.KEY=VALUE ...]\n\n"
            "Runs the model contract (shapes, causality, padding, padding and gradients;\n"
            "cfc_bench/models/contract.py) on model NAME, built-in or plugin; exit 1 when a\n"
            "check fails."
        )
        return 0 if argv else 2
    from cfc_bench.config import config_names

    name, overrides = argv[0], argv[1:]
    if name not in config_names("model"):
        print(
            f"cfc-bench check-model: unknown model '{name}'; available: "
            f"{', '.join(config_names('model'))}",
            file=sys.stderr,
        )
        return 2
    failed = 0
    for check, run in CHECKS.items():
        try:
            run(name, overrides)
        except AssertionError as err:
            failed += 1
            print(f"FAIL {check}: {err}")
        else:
            print(f"ok   {check}")
    print(f"{name}: {len(CHECKS) - failed} of {len(CHECKS)} checks passed")
    return 1 if failed else 0
