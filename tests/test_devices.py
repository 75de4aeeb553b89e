"""Every model off the CPU: on the meta device everywhere, on CUDA where there is one.

A tensor that a model makes on the CPU in its forward or backward pass (``torch.zeros``
without ``device=``) breaks it on a GPU. The meta device, which holds shapes and no data,
shows most such tensors on a machine without one: elementwise operators refuse a CPU
operand beside a meta one. It is a partial check: matrix products on meta do not compare
devices, and torch.compile builds no kernel for meta, so LTC runs its eager step there.

The ``gpu`` tests need CUDA and skip without it (``make gpu-check`` runs them): each model's
outputs and parameter gradients on the GPU equal the CPU's in float64, a training run
records the GPU and follows the CPU's losses, and the benchmark times our CfC, ncps' CfC and
LTC there.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_models_common import MODELS  # tests/ is on the path
from test_training import run

from cfc_bench.bench.cli import main as bench_main
from cfc_bench.errors import ConfigError
from cfc_bench.models.contract import N_OUT, B, T, build, inputs
from cfc_bench.run.provenance import resolve_device

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device here: the GPU checks run where there is one (make gpu-check)",
)
GPU = "cuda"
# LTC's compiled step cannot be built for meta; its eager step is the same maths.
META_OVERRIDES = {"ltc": ["model.compile=false"]}
# Models whose loop counts depend on the data (Euler sub-steps per gap, the union of a batch's
# time stamps), which meta tensors do not hold, and the RNN-VAE, whose decoder is reached
# only by its training objective (and its KL annealing reads a step counter): CUDA only.
DATA_DEPENDENT = {"ode_rnn_latent", "latent_ode_rnn", "latent_ode_ode", "rnn_vae"}


def outputs_and_grads(model: torch.nn.Module, device: str) -> dict[str, torch.Tensor]:
    """Per-step and last-valid outputs, and every parameter's gradient of their sum of
    squares, computed on ``device``, keyed by name."""
    x, dt, mask = (t.to(device) for t in inputs())
    sequence = model(x, dt, mask, return_sequences=True)
    last = model(x, dt, mask)
    (sequence.square().sum() + last.square().sum()).backward()
    found = {"sequence": sequence, "last": last}
    found.update({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    return found


@pytest.mark.parametrize("name", MODELS)
def test_model_runs_on_a_device_other_than_the_cpu(name: str) -> None:
    if name in DATA_DEPENDENT:
        pytest.skip("it reads data values (loop counts, a step counter), which meta does not hold")
    model = build(name, False, META_OVERRIDES.get(name, [])).to("meta")
    found = outputs_and_grads(model, "meta")
    assert found["sequence"].shape == (B, T, N_OUT) and found["last"].shape == (B, N_OUT)
    assert {t.device.type for t in found.values()} == {"meta"}
    # every trainable parameter is reached by the backward pass
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(found) - {"sequence", "last"} == trainable


def test_the_meta_check_catches_a_tensor_made_on_the_cpu() -> None:
    class Leaky(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.zeros(x.shape)  # no device=: made on the CPU

    with pytest.raises(RuntimeError, match="device"):
        Leaky()(torch.ones(2, 3, device="meta"))


def test_cuda_is_refused_with_a_clear_message_where_there_is_none() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: the refusal is for machines without it")
    with pytest.raises(ConfigError, match="CUDA is not available here: use device=cpu"):
        resolve_device("cuda")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", MODELS)
def test_cuda_results_equal_the_cpu_results(name: str) -> None:
    cpu_model = build(name)
    gpu_model = copy.deepcopy(cpu_model).to(GPU)
    expected, found = outputs_and_grads(cpu_model, "cpu"), outputs_and_grads(gpu_model, GPU)
    assert found.keys() == expected.keys()
    for key, value in found.items():
        assert value.device.type == GPU, key
        torch.testing.assert_close(value.cpu(), expected[key], rtol=1e-7, atol=1e-9, msg=key)


@pytest.mark.gpu
@needs_cuda
def test_training_on_cuda_records_the_gpu_and_follows_the_cpu(tmp_path: Path) -> None:
    small = ["model=cfc", "model.hidden=8", "model.backbone_units=16", "trainer.epochs=2"]
    on_cpu = run(tmp_path, "cpu", *small)
    on_gpu = run(tmp_path, "gpu", *small, f"device={GPU}")
    assert on_gpu["device"] == GPU
    assert on_gpu["device_name"] == torch.cuda.get_device_name()
    assert on_gpu["mem/peak_mb"] > 0 and on_gpu["time/step_ms"] > 0
    # Same weights and batches; float32 kernels differ in rounding only.
    losses = [pd.read_csv(tmp_path / n / "history.csv")["train_loss"] for n in ("cpu", "gpu")]
    assert losses[1].tolist() == pytest.approx(losses[0].tolist(), rel=1e-3)
    assert on_gpu["test_loss"] == pytest.approx(on_cpu["test_loss"], rel=1e-3)


@pytest.mark.gpu
@needs_cuda
def test_bench_times_our_models_and_ncps_on_cuda(tmp_path: Path) -> None:
    args = ["--device", GPU, "--batch", "8", "--steps", "6", "--inputs", "3", "--hidden", "8"]
    args += ["--repeats", "2", "--warmup", "1", "--models", "cfc,ncps_cfc,ltc,ncps_ltc"]
    assert bench_main([*args, "--out", str(tmp_path), "--tag", "gpu"]) == 0
    with open(tmp_path / "gpu.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["cfc", "ncps_cfc", "ltc", "ncps_ltc"]
    for row in rows:
        assert row["status"] == "ok", row
        assert row["device"] == GPU and row["machine"] == torch.cuda.get_device_name()
        assert float(row["train_ms"]) > 0 and float(row["infer_ms"]) > 0
        assert float(row["peak_mem_mib"]) > 0  # from torch.cuda.max_memory_allocated
