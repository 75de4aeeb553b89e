"""mTAND-Enc: observation times, the multi-time attention by hand and as the reference forms it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cfc_bench.errors import ConfigError
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.mtan import MTANConfig, MTANEnc, MTANSteps, Queries
from cfc_bench.models.whole import observation_times


def test_observation_times_cumulate_the_absolute_elapsed_times() -> None:
    # protocol=paper hands dt = 0, 0, −(t1 − t0), −(t2 − t1) for steps at 0, 0.5, 1.5, 3:
    # each step sits at the previous step's time; padding adds nothing
    dt = torch.tensor([[0.0, 0.0, -0.5, -1.0, 9.0], [0.0, 0.5, 1.0, 1.5, 0.0]])
    mask = torch.tensor([[True] * 4 + [False], [True] * 5])
    expected = torch.tensor([[0.0, 0.0, 0.5, 1.5, 1.5], [0.0, 0.5, 1.5, 3.0, 3.0]])
    torch.testing.assert_close(observation_times(dt, mask), expected)


@torch.no_grad()
def test_attention_of_two_observations_by_hand() -> None:
    """E = 2, one head, Lq = Lk = identity: φ(t) = [t ; sin(t)], s_rj = φ(ρ_r)·φ(t_j)/√2.

    Channel 0 observed at both steps, channel 1 only at the first: its average is that
    value whatever the weights."""
    torch.manual_seed(0)
    cfg = MTANConfig(hidden=2, embed_time=2, ref_points=2, time_scale=1.0)
    model = MTANEnc(cfg, SequenceIO(2, 2)).double()
    att = model.attention
    for layer in (att.query, att.key, att.out):
        layer.weight.copy_(torch.eye(2))
        layer.bias.zero_()
    att.linear_t.weight.fill_(1.0)
    att.linear_t.bias.zero_()
    att.periodic.weight.fill_(1.0)
    att.periodic.bias.zero_()
    t = torch.tensor([[0.25, 0.75]], dtype=torch.float64)
    rho = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    values = torch.tensor([[[1.0, 5.0], [3.0, -2.0]]], dtype=torch.float64)
    observed = torch.tensor([[[True, True], [True, False]]])
    u = att.attend(rho, t, torch.ones(1, 1, 1, 2, dtype=torch.bool), values, observed)

    def phi(s: float) -> tuple[float, float]:
        return s, math.sin(s)

    expected = []
    for r in (0.0, 1.0):
        s = [
            sum(a * b for a, b in zip(phi(r), phi(tj), strict=True)) / math.sqrt(2)
            for tj in (0.25, 0.75)
        ]
        w0 = math.exp(s[0]) / (math.exp(s[0]) + math.exp(s[1]))
        expected.append([w0 * 1.0 + (1 - w0) * 3.0, 5.0])
    torch.testing.assert_close(
        u[0], torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0
    )


def reference_attention(scores: torch.Tensor, values: torch.Tensor, observed: torch.Tensor):
    """The reference's form: scores repeated per channel, −1e9 where unobserved, softmax over
    the keys, weighted sum ([B,h,R,T] scores, [B,T,C] values)."""
    s = scores.unsqueeze(-1).repeat_interleave(values.shape[-1], dim=-1)
    s = s.masked_fill(observed[:, None, None] == 0, -1e9)
    return (torch.softmax(s, dim=-2) * values[:, None, None]).sum(-2)


@pytest.mark.parametrize("heads", [1, 2])
@torch.no_grad()
def test_attention_equals_the_references_masked_softmax(heads: int) -> None:
    torch.manual_seed(3)
    cfg = MTANConfig(hidden=5, embed_time=8, num_heads=heads, ref_points=7, time_scale=2.0)
    model = MTANEnc(cfg, SequenceIO(6, 2, values_with_mask=True)).double()
    att = model.attention
    b, steps, c = 3, 10, 6
    t = torch.rand(b, steps, dtype=torch.float64).sort(dim=1).values
    values = torch.randn(b, steps, c, dtype=torch.float64)
    flags = torch.rand(b, steps, c // 2) > 0.5
    flags[:, 0] = True  # every channel observed somewhere, as the reference's −1e9 needs
    observed = torch.cat([flags, flags], dim=-1)
    rho = model.rho.double().expand(b, -1)
    q = att.split(att.query(att.embed(rho)))
    k = att.split(att.key(att.embed(t)))
    scores = q @ k.transpose(-2, -1) / math.sqrt(8 // heads)
    a = reference_attention(scores, torch.where(observed, values, 0.0), observed)
    expected = att.out(a.transpose(1, 2).flatten(-2))
    ours = att.attend(rho, t, torch.ones(b, 1, 1, steps, dtype=torch.bool), values, observed)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)


@torch.no_grad()
def test_unobserved_channels_and_unobserved_values_are_never_read() -> None:
    torch.manual_seed(0)
    model = MTANConfig(hidden=4, embed_time=4, ref_points=3).build(SequenceIO(4, 2, True))
    model = model.double().eval()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    x[..., 2] = 1.0  # channel 0 observed at every step
    x[..., 3] = 0.0  # channel 1 never observed
    dt, mask = torch.ones(2, 5, dtype=torch.float64), torch.ones(2, 5, dtype=torch.bool)
    base = model(x, dt, mask)
    x[..., 1] = math.nan  # its values may hold anything
    torch.testing.assert_close(model(x, dt, mask), base, rtol=0, atol=0)


def test_per_step_outputs_of_the_activity_encoder_attend_to_the_past_only() -> None:
    model = MTANConfig(hidden=4, embed_time=4, queries=Queries.observed).build(
        SequenceIO(4, 3, True)
    )
    assert isinstance(model, MTANSteps)
    assert isinstance(model.readout, nn.Linear) and model.readout.in_features == 4


def test_heads_must_divide_the_time_embedding() -> None:
    with pytest.raises(ConfigError, match="not a multiple of model.num_heads"):
        MTANConfig(embed_time=128, num_heads=3)
