"""trainer.l2_kernel (Keras' L2 kernel regulariser in the loss) and the trainer's after-step
hook (SequenceModel.after_step)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cfc_bench.config import compose
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.cfc import CfCConfig
from cfc_bench.models.gru_d import GRUDConfig
from cfc_bench.run.folder import RunFolder
from cfc_bench.run.trainer import Trainer, l2_penalty

SMALL = [
    "task=xor",
    "task.train_samples=128",
    "task.test_samples=64",
    "trainer.epochs=1",
    "trainer.batch_size=32",
    "trainer.progress=false",
    "device=cpu",
    "model=cfc",
    "model.hidden=8",
    "model.backbone_units=8",
]


@pytest.mark.parametrize("mode", ["default", "pure"])
def test_penalty_gradient_is_2_lambda_w_on_kernels_and_zero_elsewhere(mode: str) -> None:
    model = CfCConfig(hidden=4, backbone_units=5, mode=mode, mixed_memory=True).build(
        SequenceIO(3, 2)
    )
    lam = 0.3
    l2_penalty(model, lam).backward()
    kernels = {"backbone.0.weight", "heads.weight"}
    for name, p in model.named_parameters():
        expected = 2 * lam * p.detach() if name in kernels else torch.zeros_like(p)
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(grad, expected, rtol=1e-6, atol=0, msg=name)
    assert {n for n, p in model.named_parameters() if p.grad is not None} == kernels


def test_default_kernels_are_the_matrices_outside_the_readout() -> None:
    model = GRUDConfig(hidden=4, variant="odelstm").build(SequenceIO(3, 2))
    named = dict(model.named_parameters())
    assert [id(p) for p in model.kernels()] == [
        id(named[n]) for n in ("decay.weight", "gates.weight", "candidate.weight")
    ]


def trainer(tmp_path: Path, *overrides: str) -> Trainer:
    t = Trainer(compose([*SMALL, *overrides]), RunFolder(tmp_path), None, "")
    t.setup()
    return t


def test_training_loss_adds_the_penalty(tmp_path: Path) -> None:
    """With a learning rate too small to move the weights, the epoch's loss with the penalty
    is the loss without it plus λ·ΣW² of the initial kernels; weight_decay stays the
    optimizer's own."""
    lam, tiny = 0.01, ["trainer.lr=1e-12"]
    plain = trainer(tmp_path / "plain", *tiny)
    penalised = trainer(tmp_path / "l2", *tiny, f"trainer.l2_kernel={lam}")
    penalty = float(l2_penalty(penalised.model, lam).detach())
    assert penalty > 1e-3
    assert penalised.optimizer.param_groups[0]["weight_decay"] == 0.0
    difference = penalised.train_epoch(1)[0] - plain.train_epoch(1)[0]
    assert difference == pytest.approx(penalty, rel=1e-4)


def test_after_step_runs_after_every_optimizer_step(tmp_path: Path) -> None:
    t = trainer(tmp_path)
    calls = []
    # the optimizer's step count as each call sees it: one call after each step
    t.model.after_step = lambda: calls.append(float(t.optimizer.state_dict()["state"][0]["step"]))
    _, _, steps = t.train_epoch(1)
    assert calls == [1.0, 2.0, 3.0, 4.0] and len(steps) == 4


def test_l2_kernel_must_not_be_negative() -> None:
    from cfc_bench.errors import ConfigError
    from cfc_bench.ranges import check

    with pytest.raises(ConfigError, match="trainer.l2_kernel"):
        check(compose(["trainer.l2_kernel=-1"]))
