"""`cfc-bench bench`: time a training step and an inference step of every model.

Every model config (``conf/model/*.yaml``, or those named by ``--models``) is built with its
own defaults, ``model.hidden`` set to ``--hidden`` and the ``--set`` overrides its schema
has, and run on one synthetic batch ``x [B,T,I]`` (normal), ``dt [B,T]`` (uniform in
[0.5, 1.5)), all steps valid, a one-output regression head. ncps' CfC and LTC (a dev
dependency, skipped with a message when missing) are timed beside them as ``ncps_cfc`` and
``ncps_ltc``, configured like our ``cfc`` and ``ltc`` (mode, backbone, unfolds, ...).

ncps' sequence wrappers squeeze the elapsed times to ``[B]``, which broadcasts them across
units when ``B == H`` and fails otherwise, so the ncps rows drive ncps' cells with the same
step loop as its wrappers (``return_sequences=False``, a linear output layer) but with
``ts`` shaped ``[B,1]``: the maths of our models, weight for weight
(tests/test_parity_ncps.py).

Measured per model: a training step (zero grads, forward, MSE loss, backward, Adam step)
and an inference step (forward under ``no_grad``, eval mode), each the median of
``--repeats`` runs after ``--warmup`` untimed ones. Runs go round-robin over the models, so
a change of machine load affects all of them alike. On CUDA every timing is bracketed by
``torch.cuda.synchronize``. Wall time is the result; the process's CPU time (all threads)
is recorded beside it, a steadier figure on a shared machine with one thread.

``matmul_ms`` is the matrix-product floor (cfc_bench/bench/matmul_floor.py): the matrix products
one training step of the row issued, recorded once after the timed runs (a dispatch mode
makes torch.compile'd code recompile) and replayed alone on random operands of the same
layout, round-robin over the rows, ``--repeats`` times. No rewrite of the same maths in
the same precision with the same BLAS can train faster, so ``ncps train_ms / our
matmul_ms`` is the largest speed-up over ncps there is to have. Rows whose products run in
a fused kernel the dispatcher does not show (``nn.LSTM``'s oneDNN kernel) have
``matmul_calls`` 0 and no floor. ``--no-matmul-floor`` skips it.

Peak memory is the largest amount of tensor memory allocated during one training step
above what was allocated when it started (activations, gradients, optimizer temporaries).
On CUDA it comes from ``torch.cuda.max_memory_allocated``; on CPU from a dispatch mode
(:class:`LiveTensorBytes`) that adds up the storage each operator allocates and subtracts
it when freed, i.e. the same quantity without the caching allocator's rounding. The
process's RSS is not used: the C allocator keeps freed memory and reuses it.

Ratios (``train_vs_cfc``, ``infer_vs_cfc``) divide a row's median time by that of the
baseline row (``--baseline``, default ``cfc``) measured in the same run with the same sizes:
above 1 the row is slower than our CfC. Results go to ``<out>/<tag>.csv``, every row
carrying the machine, torch version, threads, sizes and the model's full settings.

A model that fails (on CPU the process's memory is capped, ``--max-memory-gb``, so that an
oversized model fails alone instead of drawing a shared machine into the out-of-memory
killer) gets a row with the error as its status; one whose first timed training step takes
longer than ``--budget`` seconds is timed once.

``--sweep DIM=V1,V2,...`` repeats the benchmark for each value of one size (batch, steps,
inputs or hidden), writes one CSV and plots ``<figures>/scaling_<DIM>.png``: time per
training step against the size, log-log, one line per model.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import io
import json
import math
import resource
import statistics
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from cfc_bench.bench import cpu_runtime
from cfc_bench.bench.matmul_floor import MatmulReplay, record
from cfc_bench.bench.probe import sync
from cfc_bench.config import compose, config_names, flatten
from cfc_bench.errors import ConfigError
from cfc_bench.io import atomic_write
from cfc_bench.models.base import ModelConfig, SequenceIO
from cfc_bench.models.cfc import CfCConfig, HeadActivation
from cfc_bench.models.ltc import LTCConfig
from cfc_bench.run.provenance import device_name, resolve_device

DIMENSIONS = ("batch", "steps", "inputs", "hidden")
SYMBOLS = {"batch": "B", "steps": "T", "inputs": "I", "hidden": "H"}
NCPS_MIRRORS = {"ncps_cfc": "cfc", "ncps_ltc": "ltc"}  # ncps row -> the config it copies
OUTPUTS = 1
COLUMNS = [
    "model",
    "implementation",
    "status",
    "params",
    "train_ms",
    "infer_ms",
    "train_vs_cfc",
    "infer_vs_cfc",
    "matmul_ms",
    "matmul_calls",
    "train_cpu_ms",
    "infer_cpu_ms",
    "train_ms_min",
    "train_ms_max",
    "train_faults",
    "peak_mem_mib",
    "timed_runs",
    "batch",
    "steps",
    "inputs",
    "hidden",
    "sweep",
    "device",
    "machine",
    "torch",
    "threads",
    "allocator",
    "flush_denormal",
    "repeats",
    "warmup",
    "baseline",
    "overrides",
    "settings",
    "started",
]


class BenchError(ValueError):
    """A bad argument: the message says what is wrong and how to fix it."""


@dataclass
class Spec:
    """One row to benchmark: a model config (or an ncps mirror of one) and its overrides."""

    label: str
    config: str  # conf/model/<config>.yaml
    ncps: bool
    overrides: list[str] = field(default_factory=list)  # "key=value", keys below model.


@dataclass
class Sizes:
    batch: int
    steps: int
    inputs: int
    hidden: int


@dataclass
class Entry:
    """A built model with its optimizer and the measurements taken so far."""

    spec: Spec
    model: nn.Module
    settings: dict[str, Any]
    optimizer: torch.optim.Optimizer | None = None
    train: list[tuple[float, float, int]] = field(default_factory=list)  # (wall s, cpu s, faults)
    infer: list[tuple[float, float, int]] = field(default_factory=list)
    replay: MatmulReplay | None = None  # the training step's matrix products alone
    matmul: list[tuple[float, float, int]] = field(default_factory=list)
    status: str = "ok"
    peak_mem_mib: float = math.nan
    params: int = field(init=False)  # trainable, counted when built (kept if it fails later)

    def __post_init__(self) -> None:
        self.params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- arguments


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cfc-bench bench",
        description="Time training and inference steps of every model on one synthetic batch.",
        epilog="example: cfc-bench bench --batch 128 --steps 100 --inputs 82 --hidden 256 "
        "--models cfc,ncps_cfc,lstm --set model.backbone_layers=2 --set "
        "model.backbone_activation=silu",
    )
    p.add_argument("--batch", type=int, default=128, help="B (default 128)")
    p.add_argument("--steps", type=int, default=100, help="T, time steps (default 100)")
    p.add_argument("--inputs", type=int, default=82, help="I, input features (default 82)")
    p.add_argument("--hidden", type=int, default=64, help="H, every model's hidden size (64)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument(
        "--models",
        help="comma-separated model configs, ncps_cfc, ncps_ltc; a model may carry its own "
        "overrides after colons, e.g. ode_rnn:ode.solver=dopri5 "
        "(default: every config and both ncps references)",
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model override (e.g. model.backbone_layers=2), repeatable; applied to the "
        "models whose schema has KEY",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed runs per model (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baseline", default="cfc", help="row the ratios divide by (default cfc)")
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure peak memory of a training step (default on)",
    )
    p.add_argument(
        "--matmul-floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the matrix products of each training step alone, the floor no "
        "rewrite of the same maths can beat (default on; cfc_bench/bench/matmul_floor.py)",
    )
    p.add_argument(
        "--retain-freed-memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep freed memory in the process (glibc), so that steps reuse it without page "
        "faults; applies to every model of the run (default on; cfc_bench/bench/cpu_runtime.py)",
    )
    p.add_argument(
        "--flush-denormal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="flush subnormal floats to zero, as training does by default; applies to every "
        "model of the run (default on; cfc_bench/bench/cpu_runtime.py)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=120.0,
        help="seconds (default 120): a model whose first timed training step takes longer "
        "is not timed again",
    )
    p.add_argument(
        "--max-memory-gb",
        type=float,
        help="CPU only: cap the memory this process adds; a model that needs more fails "
        "alone (default: 3/4 of the memory available at start)",
    )
    p.add_argument("--sweep", metavar="DIM=V1,V2,...", help=f"vary one of {', '.join(DIMENSIONS)}")
    p.add_argument("--out", default="results/bench", help="CSV folder (default results/bench)")
    p.add_argument("--tag", help="CSV name without .csv (default from the sizes)")
    p.add_argument(
        "--figures", default="results/figures", help="sweep figure folder (results/figures)"
    )
    p.add_argument("--plot", metavar="CSV", help="only plot an existing sweep CSV, then exit")
    return p


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise BenchError(f"--{name} must be a positive integer, got {value}")
    return value


def parse_sweep(text: str) -> tuple[str, list[int]]:
    dim, _, values = text.partition("=")
    if dim not in DIMENSIONS or not values:
        raise BenchError(f"--sweep {text!r}: write DIM=V1,V2,... with DIM one of {DIMENSIONS}")
    try:
        numbers = [_positive(dim, int(v)) for v in values.split(",")]
    except ValueError:
        raise BenchError(f"--sweep {text!r}: values must be positive integers") from None
    return dim, numbers


def _key(text: str, where: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    key = key.strip().removeprefix("model.")
    if not eq or not key or not value:
        raise BenchError(f"{where} {text!r}: write KEY=VALUE, e.g. model.backbone_layers=2")
    if key in ("hidden", "name"):
        raise BenchError(f"{where} {text!r}: model.{key} is set by the benchmark (use --hidden)")
    return key, value.strip()


def parse_models(text: str | None, available: Sequence[str]) -> list[Spec]:
    mirrors = [name for name, config in NCPS_MIRRORS.items() if config in available]
    items = [m.strip() for m in text.split(",")] if text else [*available, *mirrors]
    specs = []
    for item in items:
        name, *overrides = item.split(":")
        if name not in available and name not in NCPS_MIRRORS:
            known = ", ".join([*available, *NCPS_MIRRORS])
            raise BenchError(f"--models: unknown model {name!r}; choose from {known}")
        config = NCPS_MIRRORS.get(name, name)
        if config not in available:
            raise BenchError(f"--models: {name} copies the {config!r} config, which is missing")
        keyed = [_key(o, f"--models {name}:") for o in overrides]
        specs.append(Spec(item, config, name in NCPS_MIRRORS, [f"{k}={v}" for k, v in keyed]))
    if len({s.label for s in specs}) < len(specs):
        raise BenchError(f"--models {text!r} names a model twice")
    return specs


def _has_path(cfg: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(cfg) or part not in {
            f.name for f in dataclasses.fields(cfg)
        }:
            return False
        cfg = getattr(cfg, part)
    return True


def _fields(cfg: Any, prefix: str = "") -> list[str]:
    names = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            names += _fields(value, f"{prefix}{f.name}.")
        else:
            names.append(prefix + f.name)
    return names


def compose_model(spec: Spec, hidden: int, sets: list[tuple[str, str]]) -> ModelConfig:
    """The model config of ``spec`` with ``--hidden``, the ``--set`` keys its schema has, and
    its own overrides."""
    defaults = _compose([f"model={spec.config}"]).model
    overrides = [f"model.hidden={hidden}"]
    overrides += [f"model.{k}={v}" for k, v in sets if _has_path(defaults, k)]
    for item in spec.overrides:
        key = item.split("=", 1)[0]
        if not _has_path(defaults, key):
            raise BenchError(
                f"--models {spec.label}: {spec.config} has no field {key!r}; its fields: "
                + ", ".join(_fields(defaults))
            )
        overrides.append(f"model.{item}")
    return _compose([f"model={spec.config}", *overrides]).model


def _compose(overrides: list[str]) -> Any:
    try:
        return compose(overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise BenchError(f"invalid model setting in {overrides}: {err}") from None


def check_sets(specs: list[Spec], sets: list[tuple[str, str]]) -> None:
    """Every ``--set`` key must belong to at least one selected model."""
    defaults = {s.config: _compose([f"model={s.config}"]).model for s in specs}
    for key, _ in sets:
        if not any(_has_path(cfg, key) for cfg in defaults.values()):
            listing = "; ".join(f"{n}: {', '.join(_fields(c))}" for n, c in defaults.items())
            raise BenchError(
                f"--set model.{key}: no selected model has this field. Fields: {listing}"
            )


# --------------------------------------------------------------------------- models


class NcpsSequence(nn.Module):
    """An ncps cell driven by ncps' wrapper loop, with elapsed time ``[B,1]`` per sample."""

    def __init__(self, cell: nn.Module, lstm: nn.Module | None, hidden: int, outputs: int):
        super().__init__()
        self.cell, self.lstm, self.hidden = cell, lstm, hidden
        self.fc = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden)
        c = torch.zeros_like(h) if self.lstm is not None else None
        for t in range(x.shape[1]):
            inputs, ts = x[:, t], dt[:, t].unsqueeze(-1)  # ncps: timespans[:, t].squeeze()
            if self.lstm is not None:
                h, c = self.lstm(inputs, (h, c))
            h_out, h = self.cell.forward(inputs, h, ts)
        return self.fc(h_out)


def ncps_model(cfg: ModelConfig, inputs: int) -> nn.Module:
    """ncps' counterpart of our ``cfc`` or ``ltc`` config."""
    import ncps.torch as nt
    from ncps.torch.cfc_cell import LeCun
    from ncps.torch.lstm import LSTMCell
    from ncps.wirings import FullyConnected

    def value(v: Any) -> Any:
        return v.name if isinstance(v, Enum) else v

    if isinstance(cfg, CfCConfig):
        cell = nt.CfCCell(
            inputs,
            cfg.hidden,
            value(cfg.mode),
            value(cfg.backbone_activation),
            cfg.backbone_units,
            cfg.backbone_layers,
            cfg.backbone_dropout,
        )
        if HeadActivation(cfg.head_activation) is HeadActivation.lecun_tanh:
            cell.tanh = LeCun()  # ncps applies cell.tanh to its heads only
        lstm = LSTMCell(inputs, cfg.hidden) if cfg.mixed_memory else None
        return NcpsSequence(cell, lstm, cfg.hidden, OUTPUTS)
    if not isinstance(cfg, LTCConfig):
        raise BenchError(f"ncps has no counterpart of the {type(cfg).__name__} schema")
    cell = nt.LTCCell(
        FullyConnected(cfg.hidden),
        inputs,
        input_mapping=value(cfg.input_mapping),
        output_mapping=value(cfg.output_mapping),
        ode_unfolds=cfg.ode_unfolds,
        epsilon=cfg.epsilon,
        implicit_param_constraints=True,  # as ncps.torch.LTC
    )
    return NcpsSequence(cell, None, cfg.hidden, OUTPUTS)


def ncps_available() -> bool:
    try:
        import ncps.torch  # noqa: F401
    except ImportError:
        return False
    return True


def settings_of(cfg: ModelConfig) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        if isinstance(v, Enum):
            return v.name
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        return v

    return plain(cfg)


# --------------------------------------------------------------------------- measuring


@dataclass
class Batch:
    x: torch.Tensor
    dt: torch.Tensor
    mask: torch.Tensor
    y: torch.Tensor


def make_batch(sizes: Sizes, device: torch.device, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    b, t = sizes.batch, sizes.steps
    x = torch.randn(b, t, sizes.inputs, generator=g)
    dt = torch.rand(b, t, generator=g) + 0.5
    y = torch.randn(b, OUTPUTS, generator=g)
    mask = torch.ones(b, t, dtype=torch.bool)
    return Batch(x.to(device), dt.to(device), mask.to(device), y.to(device))


def train_step(entry: Entry, batch: Batch) -> None:
    entry.model.train()
    entry.optimizer.zero_grad(set_to_none=True)
    loss = F.mse_loss(entry.model(batch.x, batch.dt, batch.mask), batch.y)
    loss.backward()
    entry.optimizer.step()


def infer_step(entry: Entry, batch: Batch) -> None:
    entry.model.eval()
    with torch.no_grad():
        entry.model(batch.x, batch.dt, batch.mask)


def minor_faults() -> int:
    """Minor page faults of this process so far: each is the kernel handing the allocator a
    fresh page, which costs microseconds (about 3 µs each on this project's VM) and
    is one reason a CPU step's time varies between runs."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(step: Callable[[], None], device: torch.device) -> tuple[float, float, int]:
    """(wall seconds, process CPU seconds, minor page faults) of one call, garbage collector
    paused."""
    sync(device)
    gc.disable()
    try:
        wall, cpu, faults = time.perf_counter(), time.process_time(), minor_faults()
        step()
        sync(device)
        return time.perf_counter() - wall, time.process_time() - cpu, minor_faults() - faults
    finally:
        gc.enable()


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of tensor storage created inside the mode and still alive, and their peak.

    Every operator's outputs are seen; a storage that none of its inputs shares is a new
    allocation, counted until it is freed (views and in-place results are not).
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.sizes: dict[int, int] = {}

    def _freed(self, key: int) -> None:
        self.live -= self.sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        inputs = {
            id(t.untyped_storage())
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = id(storage)
            if key in inputs or key in self.sizes:
                continue
            self.sizes[key] = storage.nbytes()
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._freed, key)
        return out


def peak_memory_mib(entry: Entry, batch: Batch, device: torch.device) -> float:
    """Peak tensor memory of one training step above that allocated at its start."""
    if device.type == "cuda":
        sync(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        train_step(entry, batch)
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - start) / 2**20
    with LiveTensorBytes() as tracker:
        train_step(entry, batch)
    return tracker.peak / 2**20


def _failure(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"failed: {type(err).__name__}: {text[0][:200] if text else ''}"


def run_point(
    specs: list[Spec],
    sets: list[tuple[str, str]],
    sizes: Sizes,
    args: argparse.Namespace,
    device: torch.device,
) -> list[Entry]:
    """Build every model for these sizes and time them round-robin."""
    io_ = SequenceIO(sizes.inputs, OUTPUTS)
    batch = make_batch(sizes, device, args.seed)
    entries = []
    for spec in specs:
        cfg = compose_model(spec, sizes.hidden, sets)
        torch.manual_seed(args.seed)
        try:
            model = ncps_model(cfg, sizes.inputs) if spec.ncps else cfg.build(io_)
            entry = Entry(spec, model.to(device), settings_of(cfg))
            entry.optimizer = torch.optim.Adam(entry.model.parameters(), lr=1e-3)
        except (RuntimeError, ValueError, MemoryError) as err:
            entry = Entry(spec, nn.Identity(), settings_of(cfg), status=_failure(err))
        entries.append(entry)

    def attempt(entry: Entry, work: Callable[[], Any]) -> Any:
        """``work()``, or None after marking the model failed (e.g. out of memory)."""
        try:
            return work()
        except (RuntimeError, MemoryError) as err:
            entry.status = _failure(err)
        # Out of the except block, the traceback's tensors can go too: free it all.
        entry.model, entry.optimizer = nn.Identity(), None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return None

    def measure(entry: Entry, step: Callable[[Entry, Batch], None]) -> Any:
        return attempt(entry, partial(timed, partial(step, entry, batch), device))

    for entry in entries:
        for _ in range(args.warmup if entry.status == "ok" else 0):  # compilation, caches
            if measure(entry, train_step) is None or measure(entry, infer_step) is None:
                break
        print(f"  warmed up {entry.spec.label}: {entry.status}", file=sys.stderr, flush=True)
    for _ in range(args.repeats):
        for entry in entries:
            if entry.status != "ok":
                continue
            for runs, step in ((entry.train, train_step), (entry.infer, infer_step)):
                cost = measure(entry, step)
                if cost is not None:
                    runs.append(cost)
            if entry.train and entry.train[0][0] > args.budget:
                entry.status = f"ok, timed once (training step > --budget {args.budget:g} s)"
    # Recorded after the timed runs: a dispatch mode makes torch.compile'd code recompile.
    for entry in entries if args.matmul_floor else []:
        if entry.status == "ok":
            calls = attempt(entry, partial(record, partial(train_step, entry, batch)))
            entry.replay = MatmulReplay(calls, args.seed) if calls else None
    replays = [e for e in entries if e.replay is not None]
    for e in replays:
        e.replay()  # warm-up
    for _ in range(args.repeats):
        for e in replays:
            e.matmul.append(timed(e.replay, device))
    for entry in entries if args.memory else []:
        if entry.status == "ok":  # not for failed or over-budget models
            peak = attempt(entry, partial(peak_memory_mib, entry, batch, device))
            entry.peak_mem_mib = math.nan if peak is None else peak
    return entries


# --------------------------------------------------------------------------- results


def _median_ms(runs: list[tuple[float, float, int]], which: int) -> float:
    return 1e3 * statistics.median(r[which] for r in runs) if runs else math.nan


def rows_of(
    entries: list[Entry], sizes: Sizes, args: argparse.Namespace, context: dict[str, Any]
) -> list[dict[str, Any]]:
    rows = []
    for e in entries:
        walls = [r[0] for r in e.train]
        rows.append(
            {
                "model": e.spec.label,
                "implementation": "ncps" if e.spec.ncps else "cfc_bench",
                "status": e.status,
                "params": e.params,
                "train_ms": _median_ms(e.train, 0),
                "infer_ms": _median_ms(e.infer, 0),
                "matmul_ms": _median_ms(e.matmul, 0),
                "matmul_calls": e.replay.count if e.replay is not None else 0,
                "train_cpu_ms": _median_ms(e.train, 1),
                "infer_cpu_ms": _median_ms(e.infer, 1),
                "train_ms_min": 1e3 * min(walls) if walls else math.nan,
                "train_ms_max": 1e3 * max(walls) if walls else math.nan,
                "train_faults": statistics.median(r[2] for r in e.train) if e.train else math.nan,
                "peak_mem_mib": e.peak_mem_mib,
                "timed_runs": len(e.train),
                **dataclasses.asdict(sizes),
                "overrides": " ".join(
                    [f"model.{k}={v}" for k, v in context["sets"] if k in flatten(e.settings)]
                    + [f"model.{o}" for o in e.spec.overrides]
                ),
                "settings": json.dumps(e.settings, sort_keys=True),
                **{k: v for k, v in context.items() if k != "sets"},
            }
        )
    add_ratios(rows, args.baseline)
    return rows


def add_ratios(rows: list[dict[str, Any]], baseline: str) -> None:
    """``train_vs_cfc`` and ``infer_vs_cfc``: time over the baseline row's (same sizes)."""
    for row in rows:
        row["baseline"] = baseline
        ref = next(
            (r for r in rows if r["model"] == baseline and all(r[d] == row[d] for d in DIMENSIONS)),
            None,
        )
        for kind in ("train", "infer"):
            ok = ref is not None and ref[f"{kind}_ms"] > 0
            row[f"{kind}_vs_cfc"] = row[f"{kind}_ms"] / ref[f"{kind}_ms"] if ok else math.nan


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row[k]) for k in COLUMNS})
    return atomic_write(path, lambda f: f.write(buffer.getvalue().encode()))


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def format_table(rows: list[dict[str, Any]]) -> str:
    def num(v: float, fmt: str) -> str:
        width = int(fmt.split(".")[0] or 0)
        return f"{'-':>{width}s}" if math.isnan(v) else format(v, fmt)

    baseline = rows[0]["baseline"] if rows else "cfc"
    header = (
        f"{'model':34s} {'params':>9s} {'train ms':>9s} {'×' + baseline:>7s} "
        f"{'infer ms':>9s} {'×' + baseline:>7s} {'matmul ms':>9s} {'cpu ms':>8s} "
        f"{'peak MiB':>9s}  status"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['model'][:34]:34s} {r['params']:9d} {num(r['train_ms'], '9.1f')} "
            f"{num(r['train_vs_cfc'], '7.2f')} {num(r['infer_ms'], '9.1f')} "
            f"{num(r['infer_vs_cfc'], '7.2f')} {num(r['matmul_ms'], '9.1f')} "
            f"{num(r['train_cpu_ms'], '8.1f')} "
            f"{num(r['peak_mem_mib'], '9.1f')}  {r['status']}"
        )
    by_label = {r["model"]: r for r in rows}
    for label, mirror in NCPS_MIRRORS.items():
        if label in by_label and mirror in by_label:
            theirs, ours = by_label[label], by_label[mirror]
            train, infer = (theirs[f"{k}_ms"] / ours[f"{k}_ms"] for k in ("train", "infer"))
            line = (
                f"{label} / {mirror}: training step {num(train, '.2f')}×, inference "
                f"{num(infer, '.2f')}× (above 1: ours is faster)"
            )
            if ours["matmul_ms"] >= 0.1 * ours["train_ms"]:  # where products matter at all
                line += (
                    f"; the most any rewrite of {mirror} could reach: "
                    f"{num(theirs['train_ms'] / ours['matmul_ms'], '.2f')}× (its training "
                    "step's matrix products alone)"
                )
            lines.append(line)
    return "\n".join(lines)


def plot_sweep(csv_path: str | Path, out_dir: str | Path) -> Path:
    """``<out_dir>/scaling_<dim>.png``: training-step time against the swept size, log-log."""
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    table = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    dims = table["sweep"].dropna().unique() if "sweep" in table else []
    if len(dims) != 1:
        raise BenchError(f"{csv_path}: not a sweep CSV (its 'sweep' column names no dimension)")
    dim = str(dims[0])
    ran = table[table["train_ms"].notna()]
    fixed = ", ".join(
        f"{SYMBOLS[d]}={int(ran[d].iloc[0])}" for d in DIMENSIONS if d != dim and len(ran)
    )
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (model, group) in enumerate(ran.groupby("model", sort=False)):
        group = group.sort_values(dim)
        ax.plot(group[dim], group["train_ms"], marker="o", color=f"C{i % 10}", label=model)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_xlabel(f"{dim} {SYMBOLS[dim]} (log scale)")
    ax.set_ylabel("time per training step (ms, log scale)")
    machine = f"; {ran['machine'].iloc[0]}, {ran['threads'].iloc[0]} threads" if len(ran) else ""
    ax.set_title(f"training step vs {dim} ({fixed}{machine})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    path = Path(out_dir) / f"scaling_{dim}.png"
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


# --------------------------------------------------------------------------- main


def _cap_memory(limit_gb: float | None) -> None:
    """Bound this process's private writable memory (``RLIMIT_DATA``: heap and anonymous
    maps, not the address space merely reserved), so that an oversized model fails alone
    instead of drawing the machine into swap or the out-of-memory killer."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    if limit_gb is None:
        meminfo = dict(
            line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines()
        )
        limit_gb = int(meminfo["MemAvailable"].split()[0]) / 2**20 * 0.75
    used = int(status["VmData"].split()[0]) * 1024
    limit = used + int(limit_gb * 2**30)
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = min([limit] + [v for v in (soft, hard) if v != resource.RLIM_INFINITY])
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def run(args: argparse.Namespace) -> int:
    if args.plot:
        print(f"wrote {plot_sweep(args.plot, args.figures)}")
        return 0
    for name in ("batch", "steps", "inputs", "hidden", "repeats"):
        _positive(name, getattr(args, name))
    if args.warmup < 0:
        raise BenchError(f"--warmup must be 0 or more, got {args.warmup}")
    sweep = parse_sweep(args.sweep) if args.sweep else None
    specs = parse_models(args.models, config_names("model"))
    sets = [_key(s, "--set") for s in args.sets]
    check_sets(specs, sets)
    if any(s.ncps for s in specs) and not ncps_available():
        skipped = ", ".join(s.label for s in specs if s.ncps)
        print(f"ncps is not installed (pip install ncps): skipping {skipped}", file=sys.stderr)
        specs = [s for s in specs if not s.ncps]
    try:
        device = resolve_device(args.device)
    except ConfigError as err:
        raise BenchError(str(err).replace("device=", "--device ")) from None
    if args.threads is not None:
        _positive("threads", args.threads)
    base = Sizes(args.batch, args.steps, args.inputs, args.hidden)
    points = (
        [base] if sweep is None else [dataclasses.replace(base, **{sweep[0]: v}) for v in sweep[1]]
    )
    tag = args.tag or (
        f"sweep_{sweep[0]}"
        if sweep
        else f"bench_B{base.batch}_T{base.steps}_I{base.inputs}_H{base.hidden}"
    )
    # Process-wide and one-way (cfc_bench/bench/cpu_runtime.py); set before the thread count.
    cpu = cpu_runtime.apply(args.retain_freed_memory, args.flush_denormal)
    # Thread count and memory cap are process-wide: put them back for in-process callers.
    threads, limit = torch.get_num_threads(), resource.getrlimit(resource.RLIMIT_DATA)
    try:
        torch.set_num_threads(args.threads or threads)
        if device.type == "cpu" and sys.platform.startswith("linux"):
            _cap_memory(args.max_memory_gb)
        rows = measure_all(specs, sets, points, args, device, sweep[0] if sweep else "", cpu)
    finally:
        torch.set_num_threads(threads)
        resource.setrlimit(resource.RLIMIT_DATA, limit)
    path = write_csv(rows, Path(args.out) / f"{tag}.csv")
    print(f"wrote {path}")
    if sweep is not None:
        print(f"wrote {plot_sweep(path, args.figures)}")
    return 0


def measure_all(
    specs: list[Spec],
    sets: list[tuple[str, str]],
    points: list[Sizes],
    args: argparse.Namespace,
    device: torch.device,
    sweep: str,
    cpu: dict[str, Any],
) -> list[dict[str, Any]]:
    """Benchmark rows for every size point, each printed as a table when done; ``cpu``: the
    CPU settings applied (:func:`cpu_runtime.apply`)."""
    context = {
        "sweep": sweep,
        "device": str(device),
        "machine": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "allocator": cpu["allocator"],
        "flush_denormal": cpu["flush_denormal"],
        "repeats": args.repeats,
        "warmup": args.warmup,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sets": sets,
    }
    print(
        f"cfc-bench bench on {context['machine']} ({device}, {context['threads']} threads, "
        f"torch {torch.__version__}, {context['allocator']} allocator, subnormals "
        f"{'flushed' if context['flush_denormal'] else 'kept'})",
        file=sys.stderr,
    )
    rows = []
    for sizes in points:
        print(f"B={sizes.batch} T={sizes.steps} I={sizes.inputs} H={sizes.hidden}", file=sys.stderr)
        point = rows_of(run_point(specs, sets, sizes, args, device), sizes, args, context)
        print(format_table(point), flush=True)
        rows += point
    return rows


def main(argv: list[str] | None = None) -> int:
    """`cfc-bench bench ...`; returns the exit status (2 on a bad argument)."""
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except BenchError as err:
        print(f"cfc-bench bench: error: {err}", file=sys.stderr)
        return 2
