"""Timed steps of every benchmark row at one set of sizes (:func:`run_point`).

A row (:class:`Spec`) is a model config, ``conf/model/<config>.yaml`` with its own defaults,
``model.hidden`` set to the benchmark's H, the ``--set`` overrides its schema has and the
row's own overrides (or ncps' counterpart of such a config, cfc_bench/bench/ncps.py). It runs
on one synthetic batch ``x [B,T,I]`` (normal), ``dt [B,T]`` (uniform in [0.5, 1.5)), all
steps valid, a one-output regression head.

Measured per row: a training step (zero grads, forward, MSE loss, backward, Adam step) and an
inference step (forward under ``no_grad``, eval mode), each ``repeats`` times after ``warmup``
untimed runs. Runs go round-robin over the rows, so that a change of machine load affects all
of them alike. On CUDA every timing is bracketed by ``torch.cuda.synchronize``. Each timing
records the wall time, the process's CPU time (all threads; a steadier figure on a shared
machine with one thread) and its minor page faults.

After the timed runs: the matrix-product floor (cfc_bench/bench/matmul_floor.py), the
products one training step issued, replayed alone round-robin ``repeats`` times (recorded
after the timed runs: a dispatch mode makes torch.compile'd code recompile), and the peak
memory of one training step (cfc_bench/bench/memory.py).

A row that fails (out of memory, say) gets the error as its status and keeps no times: a
step timed before a later one failed ran close to the failure (the memory cap) and is not
the model's time. A row whose first timed training step takes longer than ``budget`` seconds
is timed once. Progress, one line per row and phase, goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from cfc_bench.bench import BenchError
from cfc_bench.bench.matmul_floor import MatmulReplay, record
from cfc_bench.bench.memory import peak_memory_mib
from cfc_bench.bench.ncps import ncps_model
from cfc_bench.bench.probe import sync
from cfc_bench.config import compose
from cfc_bench.models.base import ModelConfig, SequenceIO

OUTPUTS = 1  # the regression head's width

Timing = tuple[float, float, int]  # (wall s, process CPU s, minor page faults)


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


DIMENSIONS = tuple(f.name for f in dataclasses.fields(Sizes))


@dataclass
class Entry:
    """A built model with its optimizer and the measurements taken so far."""

    spec: Spec
    model: nn.Module
    settings: dict[str, Any]
    optimizer: torch.optim.Optimizer | None = None
    train: list[Timing] = field(default_factory=list)
    infer: list[Timing] = field(default_factory=list)
    replay: MatmulReplay | None = None  # the training step's matrix products alone
    matmul: list[Timing] = field(default_factory=list)
    status: str = "ok"
    peak_mem_mib: float = math.nan
    params: int = field(init=False)  # trainable, counted when built (kept if it fails later)

    def __post_init__(self) -> None:
        self.params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    @property
    def ok(self) -> bool:
        return not self.status.startswith("failed")

    def fail(self, err: BaseException) -> None:
        """Mark the row failed: the error as its status, no times, the model freed."""
        text = str(err).strip().splitlines()
        self.status = f"failed: {type(err).__name__}: {text[0][:200] if text else ''}"
        self.train, self.infer, self.matmul, self.replay = [], [], [], None
        self.model, self.optimizer = nn.Identity(), None


# --------------------------------------------------------------------------- model configs


def has_path(cfg: Any, dotted: str) -> bool:
    """Whether the config dataclass ``cfg`` has the (dotted) field ``dotted``."""
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(cfg) or part not in {
            f.name for f in dataclasses.fields(cfg)
        }:
            return False
        cfg = getattr(cfg, part)
    return True


def field_names(cfg: Any, prefix: str = "") -> list[str]:
    """The dotted names of every leaf field of the config dataclass ``cfg``."""
    names = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            names += field_names(value, f"{prefix}{f.name}.")
        else:
            names.append(prefix + f.name)
    return names


def model_defaults(config: str) -> ModelConfig:
    """``conf/model/<config>.yaml`` as composed with nothing overridden."""
    return compose_checked([f"model={config}"]).model


def compose_checked(overrides: list[str]) -> Any:
    """The composed config, or a :class:`BenchError` naming the overrides that fail."""
    try:
        return compose(overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise BenchError(f"invalid model setting in {overrides}: {err}") from None


def compose_model(spec: Spec, hidden: int, sets: list[tuple[str, str]]) -> ModelConfig:
    """The model config of ``spec`` with ``hidden``, the ``--set`` keys its schema has, and
    its own overrides."""
    defaults = model_defaults(spec.config)
    overrides = [f"model.hidden={hidden}"]
    overrides += [f"model.{k}={v}" for k, v in sets if has_path(defaults, k)]
    for item in spec.overrides:
        key = item.split("=", 1)[0]
        if not has_path(defaults, key):
            raise BenchError(
                f"--models {spec.label}: {spec.config} has no field {key!r}; its fields: "
                + ", ".join(field_names(defaults))
            )
        overrides.append(f"model.{item}")
    return compose_checked([f"model={spec.config}", *overrides]).model


def settings_of(cfg: ModelConfig) -> dict[str, Any]:
    """The config as plain JSON values (enums by name, nested configs as dicts)."""

    def plain(v: Any) -> Any:
        if isinstance(v, Enum):
            return v.name
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        return v

    return plain(cfg)


# --------------------------------------------------------------------------- steps


@dataclass
class Batch:
    x: torch.Tensor
    dt: torch.Tensor
    mask: torch.Tensor
    y: torch.Tensor


def make_batch(
    sizes: Sizes, device: torch.device, seed: int, observed: float | None = None
) -> Batch:
    """Random inputs, elapsed times in [0.5, 1.5) and targets. With ``observed``, the inputs
    are ``[values ; observed-mask]`` halves as PhysioNet's: each value observed with that
    probability, 0 where it is not."""
    g = torch.Generator().manual_seed(seed)
    b, t = sizes.batch, sizes.steps
    x = torch.randn(b, t, sizes.inputs, generator=g)
    if observed is not None:
        seen = (torch.rand(b, t, sizes.inputs // 2, generator=g) < observed).float()
        x = torch.cat([x[..., : sizes.inputs // 2] * seen, seen], dim=-1)
    dt = torch.rand(b, t, generator=g) + 0.5
    y = torch.randn(b, OUTPUTS, generator=g)
    mask = torch.ones(b, t, dtype=torch.bool)
    return Batch(x.to(device), dt.to(device), mask.to(device), y.to(device))


def train_step(entry: Entry, batch: Batch) -> None:
    entry.model.train()
    entry.optimizer.zero_grad(set_to_none=True)
    loss = F.mse_loss(entry.model(batch.x, batch.dt, batch.mask), batch.y)
    auxiliary = getattr(entry.model, "auxiliary_loss", lambda: None)()  # ncps has none
    if auxiliary is not None:  # a generative model's own terms, part of its training step
        loss = loss + auxiliary
    loss.backward()
    entry.optimizer.step()


def infer_step(entry: Entry, batch: Batch) -> None:
    entry.model.eval()
    with torch.no_grad():
        entry.model(batch.x, batch.dt, batch.mask)


def minor_faults() -> int:
    """Minor page faults of this process so far: each is the kernel handing the allocator a
    fresh page, which costs microseconds and is one reason a CPU step's time varies between
    runs."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(step: Callable[[], None], device: torch.device) -> Timing:
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


def progress(text: str, end: str = "\n") -> None:
    print(f"  {text}", end=end, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- one point


def build(
    spec: Spec,
    cfg: ModelConfig,
    sizes: Sizes,
    device: torch.device,
    seed: int,
    values_with_mask: bool = False,
) -> Entry:
    """The row's model on ``device`` with its optimizer; failed if it cannot be built."""
    torch.manual_seed(seed)
    try:
        model = (
            ncps_model(cfg, sizes.inputs, OUTPUTS)
            if spec.ncps
            else cfg.build(SequenceIO(sizes.inputs, OUTPUTS, values_with_mask))
        )
        entry = Entry(spec, model.to(device), settings_of(cfg))
        entry.optimizer = torch.optim.Adam(entry.model.parameters(), lr=1e-3)
    except (RuntimeError, ValueError, MemoryError) as err:
        entry = Entry(spec, nn.Identity(), settings_of(cfg))
        entry.fail(err)
    return entry


def run_point(
    specs: list[Spec],
    sets: list[tuple[str, str]],
    sizes: Sizes,
    args: argparse.Namespace,
    device: torch.device,
) -> list[Entry]:
    """Build every model for these sizes and time them round-robin (``args``: ``seed``,
    ``warmup``, ``repeats``, ``budget``, ``matmul_floor``, ``memory``, ``observed``)."""
    observed = args.observed
    batch = make_batch(sizes, device, args.seed, observed)
    entries = [
        build(
            spec,
            compose_model(spec, sizes.hidden, sets),
            sizes,
            device,
            args.seed,
            values_with_mask=observed is not None,
        )
        for spec in specs
    ]

    def attempt(entry: Entry, work: Callable[[], Any]) -> Any:
        """``work()``, or None after marking the row failed (e.g. out of memory)."""
        try:
            return work()
        except (RuntimeError, MemoryError) as err:
            entry.fail(err)
        # Out of the except block, the traceback's tensors can go too: free it all.
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return None

    def measure(entry: Entry, step: Callable[[Entry, Batch], None]) -> Timing | None:
        return attempt(entry, partial(timed, partial(step, entry, batch), device))

    for entry in entries:
        progress(f"warm-up {entry.spec.label} ... ", end="")  # compiling may take a minute
        start = time.perf_counter()
        for _ in range(args.warmup if entry.ok else 0):  # compilation, caches
            if measure(entry, train_step) is None or measure(entry, infer_step) is None:
                break
        print(f"{time.perf_counter() - start:.1f} s, {entry.status}", file=sys.stderr, flush=True)
    for repeat in range(1, args.repeats + 1):
        for entry in entries:
            if entry.status != "ok":  # failed, or timed once (over budget)
                continue
            for runs, step in ((entry.train, train_step), (entry.infer, infer_step)):
                cost = measure(entry, step)
                if cost is None:
                    break
                runs.append(cost)
            if entry.ok:
                done = f"training {1e3 * entry.train[-1][0]:.1f} ms, "
                done += f"inference {1e3 * entry.infer[-1][0]:.1f} ms"
            else:
                done = entry.status
            progress(f"repeat {repeat}/{args.repeats} {entry.spec.label}: {done}")
            if entry.train and entry.train[0][0] > args.budget:
                entry.status = f"ok, timed once (training step > --budget {args.budget:g} s)"
    if args.matmul_floor:
        time_matmul_floor(entries, batch, args, device, attempt)
    for entry in entries if args.memory else []:
        if entry.status == "ok":  # not for failed or over-budget models
            peak = attempt(
                entry, partial(peak_memory_mib, partial(train_step, entry, batch), device)
            )
            entry.peak_mem_mib = math.nan if peak is None else peak
            done = entry.status if peak is None else f"{peak:.1f} MiB"
            progress(f"peak memory {entry.spec.label}: {done}")
    return entries


def time_matmul_floor(
    entries: list[Entry],
    batch: Batch,
    args: argparse.Namespace,
    device: torch.device,
    attempt: Callable[[Entry, Callable[[], Any]], Any],
) -> None:
    """Record each row's training-step matrix products and time them alone, round-robin."""
    for entry in entries:
        if entry.status == "ok":
            calls = attempt(entry, partial(record, partial(train_step, entry, batch)))
            entry.replay = MatmulReplay(calls, args.seed) if calls else None
    replays = [e for e in entries if e.replay is not None]
    if replays:
        labels = ", ".join(e.spec.label for e in replays)
        progress(f"matrix products alone: {labels}")
    for e in replays:
        e.replay()  # warm-up
    for _ in range(args.repeats):
        for e in replays:
            e.matmul.append(timed(e.replay, device))
