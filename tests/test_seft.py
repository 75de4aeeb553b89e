"""SeFT-Attn: the set elements, attention pooling by hand, and invariance to the set's order."""

from __future__ import annotations

import math

import torch

from cfc_bench.models.base import SequenceIO
from cfc_bench.models.seft import SeFT, SeFTConfig

F64 = torch.float64


def build(**overrides: float) -> SeFT:
    torch.manual_seed(0)
    cfg = SeFTConfig(**{"hidden": 4, "latent_width": 3, "psi_latent_width": 2, **overrides})
    return SeFT(cfg, SequenceIO(4, 2, values_with_mask=True)).double().eval()


@torch.no_grad()
def test_set_elements_encode_time_value_and_channel() -> None:
    """P = 4: timescales 1 and 100; one observation of channel 1 (value 0.3) at t = 2."""
    model = build(positional_dims=4, max_timescale=100.0)
    x = torch.tensor([[[0.0, 0.3, 0.0, 1.0]]], dtype=F64)  # [values ; observed-mask]
    s, valid = model.elements(x, torch.tensor([[2.0]], dtype=F64), torch.ones(1, 1, dtype=bool))
    expected = [math.sin(2.0), math.sin(0.02), math.cos(2.0), math.cos(0.02), 0.3, 0.0, 1.0]
    torch.testing.assert_close(s[0, 0], torch.tensor(expected, dtype=F64))
    assert valid.tolist() == [[True]]


@torch.no_grad()
def test_attention_pooling_by_hand() -> None:
    """z^h = Σ_n softmax_n(([s_n ; mean ψ] W_k)^h · q^h / √dim) φ(s_n) over the valid elements."""
    model = build(phi_layers=0, psi_layers=0, heads=2, dot_prod_dim=3)
    model.queries.copy_(torch.randn(2, 3, dtype=F64))
    s = torch.randn(1, 4, 7, dtype=F64)  # P = 4, one value, D = 2
    valid = torch.tensor([[True, False, True, True]])
    phi_w, phi_b = model.phi[0].weight.tolist(), model.phi[0].bias.tolist()
    psi_w, psi_b = model.psi[0].weight.tolist(), model.psi[0].bias.tolist()
    k_w, q = model.keys.weight.tolist(), model.queries.tolist()

    def dense_relu(w: list, b: list, v: list) -> list:
        return [
            max(0.0, sum(wi * vi for wi, vi in zip(row, v, strict=True)) + bi)
            for row, bi in zip(w, b, strict=True)
        ]

    elements = [s[0, n].tolist() for n in (0, 2, 3)]
    psis = [dense_relu(psi_w, psi_b, e) for e in elements]
    psi_mean = [sum(p[i] for p in psis) / 3 for i in range(2)]
    z = []
    for h in range(2):
        logits = []
        for e in elements:
            key = [sum(w * v for w, v in zip(row, e + psi_mean, strict=True)) for row in k_w]
            logits.append(sum(key[3 * h + i] * q[h][i] for i in range(3)) / math.sqrt(3))
        a = [math.exp(v) / sum(math.exp(u) for u in logits) for v in logits]
        phis = [dense_relu(phi_w, phi_b, e) for e in elements]
        z += [sum(a[n] * phis[n][i] for n in range(3)) for i in range(3)]
    torch.testing.assert_close(model.pool(s, valid)[0], torch.tensor(z, dtype=F64))


@torch.no_grad()
def test_pooling_is_invariant_to_the_order_of_the_set() -> None:
    model = build()
    model.queries.copy_(torch.randn_like(model.queries))
    s = torch.randn(3, 7, 7, dtype=F64)
    valid = torch.rand(3, 7) > 0.3
    valid[:, 0] = True
    perm = torch.randperm(7)
    torch.testing.assert_close(model.pool(s[:, perm], valid[:, perm]), model.pool(s, valid))
    s[~valid] = 1e6  # what invalid slots hold is never read
    torch.testing.assert_close(
        model.pool(s, valid), model.pool(s.where(valid[..., None], 0), valid)
    )
