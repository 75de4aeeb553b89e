"""CfC against ncps (the authors' maintained library), weight for weight.

ncps' sequence wrapper squeezes the elapsed time to ``[B]``, which broadcasts across units
when the batch size equals the hidden size (and fails otherwise), so the test drives the
ncps cells step by step with elapsed time shaped ``[B,1]``, as intended. Our CfC fuses the
four ncps heads (ff1, ff2, time_a, time_b) into one matrix in that order; the weights are
copied accordingly. That is the only structural difference.
"""

from __future__ import annotations

import pytest
import torch
from ncps.torch import CfCCell
from ncps.torch.cfc_cell import LeCun
from ncps.torch.lstm import LSTMCell

from cfc_bench.models.base import SequenceIO
from cfc_bench.models.cfc import CfCConfig, CfCMode, HeadActivation, PureInit

N_IN, H, N_OUT, T, UNITS = 3, 16, 2, 7, 12


def ncps_backbone(cell: CfCCell) -> list[torch.nn.Linear]:
    return [m for m in cell.backbone or [] if isinstance(m, torch.nn.Linear)]


def copy_into_ncps(model, cell: CfCCell, lstm: LSTMCell | None, readout: torch.nn.Linear) -> None:
    ncps_layers = ncps_backbone(cell)
    with torch.no_grad():
        for ours, theirs in zip(model.backbone, ncps_layers, strict=True):
            theirs.load_state_dict(ours.state_dict())
        if model.mode is CfCMode.pure:
            cell.ff1.load_state_dict(model.heads.state_dict())
            cell.A.copy_(model.A)
            cell.w_tau.copy_(model.w_tau)
        else:
            for k, name in enumerate(["ff1", "ff2", "time_a", "time_b"]):
                head = getattr(cell, name)
                head.weight.copy_(model.heads.weight[k * H : (k + 1) * H])
                head.bias.copy_(model.heads.bias[k * H : (k + 1) * H])
        readout.load_state_dict(model.readout.state_dict())
        if lstm is not None:
            lstm.input_map.load_state_dict(model.lstm.input_map.state_dict())
            lstm.recurrent_map.load_state_dict(model.lstm.recurrent_map.state_dict())


def ncps_forward(cell, lstm, readout, x, dt):
    h = torch.zeros(x.shape[0], H, dtype=x.dtype)
    c = torch.zeros_like(h)
    outs = []
    for t in range(x.shape[1]):
        if lstm is not None:
            h, c = lstm(x[:, t], (h, c))
        h, _ = cell(x[:, t], h, dt[:, t : t + 1])
        outs.append(readout(h))
    return torch.stack(outs, dim=1)


def check_against_ncps(mode: str, mixed: bool, batch: int, layers: int, head: str = "tanh") -> None:
    torch.manual_seed(0)
    cfg = CfCConfig(
        mode=CfCMode(mode),
        hidden=H,
        backbone_units=UNITS,
        backbone_layers=layers,
        backbone_activation="silu",
        head_activation=HeadActivation(head),
        mixed_memory=mixed,
    )
    model = cfg.build(SequenceIO(N_IN, N_OUT)).double()
    cell = CfCCell(N_IN, H, mode, "silu", UNITS, layers).double()
    if head == "lecun_tanh":
        cell.tanh = LeCun()  # ncps applies cell.tanh to its heads only
    lstm = LSTMCell(N_IN, H).double() if mixed else None
    readout = torch.nn.Linear(H, N_OUT).double()
    copy_into_ncps(model, cell, lstm, readout)

    x = torch.randn(batch, T, N_IN, dtype=torch.float64)
    dt = torch.rand(batch, T, dtype=torch.float64) * 2 + 0.05  # irregular elapsed times
    mask = torch.ones(batch, T, dtype=torch.bool)
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = model(x_ours, dt, mask, return_sequences=True)
    theirs = ncps_forward(cell, lstm, readout, x_theirs, dt)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)

    ours.square().sum().backward()
    theirs.square().sum().backward()
    pairs = [(x_ours.grad, x_theirs.grad)]
    for a, b in zip(model.backbone, ncps_backbone(cell), strict=True):
        pairs += [(a.weight.grad, b.weight.grad), (a.bias.grad, b.bias.grad)]
    pairs.append((model.readout.weight.grad, readout.weight.grad))
    if mode == "pure":
        pairs += [(model.heads.weight.grad, cell.ff1.weight.grad), (model.A.grad, cell.A.grad)]
        pairs += [(model.heads.bias.grad, cell.ff1.bias.grad), (model.w_tau.grad, cell.w_tau.grad)]
    else:
        heads = [getattr(cell, n) for n in ["ff1", "ff2", "time_a", "time_b"]]
        pairs.append((model.heads.weight.grad, torch.cat([h.weight.grad for h in heads])))
        pairs.append((model.heads.bias.grad, torch.cat([h.bias.grad for h in heads])))
    if mixed:
        pairs.append((model.lstm.recurrent_map.weight.grad, lstm.recurrent_map.weight.grad))
        pairs.append((model.lstm.input_map.weight.grad, lstm.input_map.weight.grad))
        pairs.append((model.lstm.input_map.bias.grad, lstm.input_map.bias.grad))
    for a, b in pairs:
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["default", "no_gate", "pure"])
@pytest.mark.parametrize("mixed", [False, True], ids=["plain", "mixed_memory"])
@pytest.mark.parametrize("batch", [H, 5], ids=["B==H", "B!=H"])
@pytest.mark.parametrize("layers", [0, 1, 2])
def test_cfc_matches_ncps(mode: str, mixed: bool, batch: int, layers: int) -> None:
    check_against_ncps(mode, mixed, batch, layers)


@pytest.mark.parametrize("mode", ["default", "no_gate"])
@pytest.mark.parametrize("mixed", [False, True], ids=["plain", "mixed_memory"])
def test_lecun_heads_match_ncps_with_the_tensorflow_head_activation(mode: str, mixed: bool) -> None:
    """The TensorFlow cell's heads: ncps with its head tanh swapped for LeCun's tanh."""
    check_against_ncps(mode, mixed, 5, 1, head="lecun_tanh")


def test_batch_equal_to_hidden_does_not_broadcast_time_across_units() -> None:
    """Scaling one sample's elapsed time changes that sample's output only."""
    torch.manual_seed(1)
    model = CfCConfig(hidden=H, backbone_units=UNITS).build(SequenceIO(N_IN, N_OUT)).double()
    x = torch.randn(H, T, N_IN, dtype=torch.float64)
    dt = torch.rand(H, T, dtype=torch.float64) + 0.1
    mask = torch.ones(H, T, dtype=torch.bool)
    base = model(x, dt, mask)
    dt2 = dt.clone()
    dt2[3] *= 5
    moved = model(x, dt2, mask)
    changed = (moved - base).abs().amax(dim=1) > 1e-9
    assert changed.tolist() == [i == 3 for i in range(H)]


@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_initial_weights_follow_the_reference_distribution(gain: float) -> None:
    """Each fused head is drawn with its own fans, as ncps' four separate heads are.

    Xavier-uniform over the fused [4H, units] matrix would draw from a narrower range
    (bound sqrt(6 / (4H + units)) instead of sqrt(6 / (H + units))). ncps has no gain; the
    reference scripts scale the same draw by ``init``. The readout keeps torch's default.
    """
    hidden, units = 256, 64
    torch.manual_seed(0)
    model = CfCConfig(hidden=hidden, backbone_units=units, init_gain=gain).build(
        SequenceIO(N_IN, N_OUT)
    )
    cell = CfCCell(N_IN, hidden, "default", "silu", units, 1)
    theirs = [getattr(cell, n).weight for n in ["ff1", "ff2", "time_a", "time_b"]]
    for ours, ref in zip(model.heads.weight.chunk(4), theirs, strict=True):
        assert ours.std().item() == pytest.approx(gain * ref.std().item(), rel=0.03)
        assert ours.abs().max().item() <= gain * (6 / (hidden + units)) ** 0.5
    backbone_ref = ncps_backbone(cell)[0].weight
    assert model.backbone[0].weight.std().item() == pytest.approx(
        gain * backbone_ref.std().item(), rel=0.03
    )
    assert model.readout.weight.abs().max().item() <= hidden**-0.5  # torch's default bound


@pytest.mark.parametrize("pure_init", ["xavier", "constant"])
def test_cfs_time_constants_start_as_the_chosen_reference(pure_init: str) -> None:
    """Cf-S's ``A`` and ``w_tau``: the PyTorch reference's xavier draw of every [1,H] parameter,
    or the TensorFlow reference's constants (A = 1, w_tau = 0); the matrices get their xavier
    draw either way."""
    hidden, units = 64, 32
    torch.manual_seed(0)
    model = CfCConfig(
        hidden=hidden, backbone_units=units, mode=CfCMode.pure, pure_init=PureInit(pure_init)
    ).build(SequenceIO(N_IN, N_OUT))
    bound = (6 / (1 + hidden)) ** 0.5  # xavier over [1, H]
    if pure_init == "constant":
        assert torch.equal(model.A, torch.ones(1, hidden))
        assert torch.equal(model.w_tau, torch.zeros(1, hidden))
    else:
        for p in (model.A, model.w_tau):
            assert p.abs().max().item() <= bound
            assert p.std().item() == pytest.approx(bound / 3**0.5, rel=0.25)
    heads_bound = (6 / (hidden + units)) ** 0.5
    assert model.heads.weight.abs().max().item() <= heads_bound
    assert model.heads.weight.std().item() == pytest.approx(heads_bound / 3**0.5, rel=0.05)
