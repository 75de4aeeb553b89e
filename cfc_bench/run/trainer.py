"""The one trainer: fits any model on any task and records metrics and honest timings.

Timing rules: an epoch's time is the wall clock of its training loop only (batching,
forward, backward, optimizer step), with CUDA synchronised; evaluation is excluded. The
reported time per epoch is the median over the epochs after the first (the first pays
for warm-up); step time is the median over the steps of those epochs; inference time is
one pass over the test set divided by its size. Every figure goes out with the device,
torch version and thread count it was measured with.

Interruptions: a checkpoint (model, optimizer, scheduler, RNG states, history, timings) is
written atomically after every epoch, and a run whose folder holds one resumes from it, so
a run killed at any moment and started again ends with the same numbers as one that was
never stopped (on the same device and thread count). SIGINT and SIGTERM stop a run at once
with exit status 128 + signal number, keeping the last epoch's checkpoint (the epoch under
way is trained again on resume). A launcher that handles these signals itself (submitit
requeues jobs on pre-emption) keeps its handlers. A run folder is trained by one process
at a time (a lock), and a folder holding results of another configuration is refused.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import math
import os
import platform
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from cfc_bench.bench import cpu_runtime
from cfc_bench.bench.probe import Probe, probe, sync
from cfc_bench.config import RUNTIME_KEYS, Optimizer, RunConfig, flatten
from cfc_bench.errors import ConfigError, OutputConflict, TrainingError
from cfc_bench.io import atomic_write, write_json, write_text
from cfc_bench.run.loggers import NullLogger, WandbLogger, open_logger
from cfc_bench.tasks.base import Select, SequenceData, Task

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
FAILED_FILE = "failed.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.yaml"
LOCK_FILE = ".lock"
OUTPUTS_FILE = "test_outputs.npz"


def write_outputs(path: Path, out: torch.Tensor, data: SequenceData) -> None:
    """The test split's model outputs, targets and mask, compressed: a metric declared later is
    computed from them without retraining (``numpy.load(path)``: ``out``, ``y``, ``mask``)."""
    arrays = {
        "out": out.detach().float().cpu().numpy(),
        "y": data.y.cpu().numpy(),
        "mask": data.mask.cpu().numpy(),
    }
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; the last epoch's checkpoint is kept for a resume."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    # A second signal of the same kind gets the default action (stop at once).
    signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    raise Interrupted(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into ``Interrupted`` for the duration of the block.

    Only where the signal still has Python's default handling, in the main thread: a
    launcher's own handlers (submitit's requeue, Ray's worker handlers) and an ignored
    SIGINT (``nohup``, background jobs) stay as they are.
    """
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    taken = {}
    if threading.current_thread() is threading.main_thread():
        for signum, default in defaults.items():
            if signal.getsignal(signum) is default:
                signal.signal(signum, _raise_interrupted)
                taken[signum] = default
    try:
        yield
    finally:
        for signum, default in taken.items():
            signal.signal(signum, default)


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the block, so that one process at a time trains a run.

    The kernel drops the lock when its holder ends, however it ends (SIGKILL included).
    """
    with open(folder / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise OutputConflict(
                f"{folder} is in use by {holder}: wait until it ends, or give this run "
                "its own output folder"
            ) from None
        except OSError as err:  # file systems without flock (Lustre mounted without it)
            log.warning(
                "cannot lock %s (%s): runs in the same folder are not detected", folder, err
            )
        else:
            lock.truncate(0)
            lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            lock.flush()
        yield


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"device='{spec}' is not valid: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device='{spec}' but CUDA is not available here: use device=cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device='{spec}' is not supported: use auto, cpu, cuda or cuda:N")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def code_version() -> str | None:
    """The git commit this package runs from, ``-dirty`` appended when its code (``cfc_bench``,
    ``conf``, ``pyproject.toml``) differs from that commit; None outside its own checkout (an
    installed package, or one inside another repository). Read once per process, at its first
    run: a sweep's later jobs run the code loaded then, whatever was committed since."""
    package = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(package), *args], capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != package.parent:
        return None
    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    changed = git("status", "--porcelain", "--", *CODE_PATHS)
    return f"{commit}-dirty" if changed else commit


CODE_PATHS = (":/cfc_bench", ":/conf", ":/pyproject.toml")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def batches(
    data: SequenceData, batch_size: int, order: torch.Tensor | None = None
) -> Iterator[SequenceData]:
    n = len(data)
    for start in range(0, n, batch_size):
        if order is None:
            yield data.take(slice(start, start + batch_size))
        else:
            yield data.take(order[start : start + batch_size])


@torch.no_grad()
def predict(
    model: torch.nn.Module, task: Task, data: SequenceData, batch_size: int
) -> torch.Tensor:
    model.eval()
    outs = [model(b.x, b.dt, b.mask, task.per_step) for b in batches(data, batch_size)]
    return torch.cat(outs)


def make_optimizer(cfg: RunConfig, params: Any) -> torch.optim.Optimizer:
    t = cfg.trainer
    kind = Optimizer(t.optimizer)
    if kind is Optimizer.adam:
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if kind is Optimizer.adamw:
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.RMSprop(params, lr=t.lr, alpha=t.rmsprop_alpha, weight_decay=t.weight_decay)


@dataclass
class State:
    """Everything a resumed run needs besides model and optimizer."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_s: list[float] = field(default_factory=list)
    step_s: list[list[float]] = field(default_factory=list)  # per epoch
    best_val: float | None = None
    best_epoch: int | None = None
    best_weights: dict[str, torch.Tensor] | None = None
    started_at: str | None = None  # when the run first started (UTC)
    resumes: int = 0  # how often the run was resumed from a checkpoint
    logger_id: str | None = None  # the wandb run a resumed job continues
    # code_version() at the first start and at every resume that ran other code
    code_versions: list[str | None] = field(default_factory=list)
    # the readings of probe.probe() at every start and after the last epoch: machine speed
    probe_ms: list[float] = field(default_factory=list)
    # device_name() at the first start and at every resume on another machine (None: a
    # checkpoint that recorded none): a run in pieces may span machines of unlike speed
    device_names: list[str | None] = field(default_factory=list)


def rng_state(shuffle: torch.Generator) -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "shuffle": shuffle.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    shuffle.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    def __init__(
        self,
        cfg: RunConfig,
        out_dir: Path,
        experiment: str | None,
        config_yaml: str,
        resume_hint: str | None = None,
    ):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.experiment = experiment
        self.config_yaml = config_yaml
        self.resume_hint = resume_hint or f"train again into {self.out_dir}"
        self.state = State(started_at=_now())
        self.code_version = code_version()  # now: the code this process has loaded
        self.epoch = 0  # the epoch under way (0 before training, epochs while testing)
        self.saved_epoch = 0  # the epoch of the checkpoint on disk
        self.logger: NullLogger | WandbLogger = NullLogger()

    # -- set-up ---------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        self.cpu_settings = cpu_runtime.apply(
            cfg.trainer.retain_freed_memory, cfg.trainer.flush_denormal
        )
        if cfg.trainer.threads is not None:
            torch.set_num_threads(cfg.trainer.threads)
        self.device = resolve_device(cfg.device)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.shuffle = torch.Generator().manual_seed(cfg.seed)
        self.task = cfg.task.build(cfg.data)
        self.select = self.task.select or Select(cfg.trainer.select)
        if "val" not in self.task.splits:
            self.select = Select.last
        self.splits = {k: v.to(self.device) for k, v in self.task.splits.items()}
        self.model = cfg.model.build(self.task.io).to(self.device)
        self.optimizer = make_optimizer(cfg, self.model.parameters())
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, cfg.trainer.decay)
        weights = cfg.trainer.class_weights
        self.class_weights = (
            None
            if weights is None
            else torch.tensor(weights, dtype=torch.float32, device=self.device)
        )
        self.n_params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    # -- checkpoints ----------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_FILE

    def save_checkpoint(self) -> None:
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "state": self.state.__dict__,
            "rng": rng_state(self.shuffle),
            "config": self.config_yaml,
        }
        atomic_write(self.checkpoint_path, lambda f: torch.save(payload, f))
        self.saved_epoch = self.state.epoch

    def load_checkpoint(self) -> None:
        payload = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.state = State(**payload["state"])
        self.state.resumes += 1
        self.saved_epoch = self.state.epoch
        set_rng_state(payload["rng"], self.shuffle)
        log.info("resumed from %s after epoch %d", self.checkpoint_path, self.state.epoch)

    # -- the loop -------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> tuple[float, float, list[float]]:
        """One pass over the training split: mean loss, wall-clock seconds, step seconds."""
        model, train, t = self.model, self.splits["train"], self.cfg.trainer
        model.train()
        order = torch.randperm(len(train), generator=self.shuffle).to(self.device)
        n_batches = math.ceil(len(train) / t.batch_size)
        bar = tqdm(
            total=n_batches,
            desc=f"epoch {epoch}",
            leave=False,
            disable=not (t.progress and sys.stderr.isatty()),
        )
        total_loss = torch.zeros((), device=self.device)
        steps: list[float] = []
        sync(self.device)
        start = time.perf_counter()
        for i, batch in enumerate(batches(train, t.batch_size, order)):
            step_start = time.perf_counter()
            out = model(batch.x, batch.dt, batch.mask, self.task.per_step)
            loss = self.task.loss(out, batch, self.class_weights)
            if not torch.isfinite(loss):
                hint = (
                    "the very first forward pass, before any update: the model cannot take "
                    "these inputs (an ODE model given negative elapsed times, as PhysioNet's "
                    "task.protocol=paper does, say), which no learning rate fixes"
                    if epoch == 1 and i == 0
                    else "lower trainer.lr or set trainer.clip_norm"
                )
                raise TrainingError(
                    f"non-finite training loss ({loss.item()}) at epoch {epoch}, step {i + 1} "
                    f"of {n_batches}: {hint}",
                    epoch,
                    i + 1,
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if t.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_norm)
            self.optimizer.step()
            total_loss += loss.detach() * len(batch)
            sync(self.device)
            now = time.perf_counter()
            steps.append(now - step_start)
            if not bar.disable:
                bar.set_postfix(loss=f"{loss.item():.4f}", seq_s=f"{len(batch) / steps[-1]:.0f}")
                bar.update()
        sync(self.device)
        elapsed = time.perf_counter() - start
        bar.close()
        return float(total_loss) / len(train), elapsed, steps

    def evaluate(self, split: str) -> tuple[float, dict[str, float]]:
        """Loss and every recorded metric on a split."""
        data = self.splits[split]
        out = predict(self.model, self.task, data, self.cfg.trainer.eval_batch_size)
        loss = float(self.task.loss(out, data, self.class_weights))
        return loss, self.task.scores(out, data)

    def fit(self) -> None:
        t, state = self.cfg.trainer, self.state
        metric = self.task.metric
        for epoch in range(state.epoch + 1, t.epochs + 1):
            self.epoch = epoch
            train_loss, epoch_s, step_s = self.train_epoch(epoch)
            row: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": train_loss,
                "lr": self.optimizer.param_groups[0]["lr"],
                "epoch_s": epoch_s,
                "step_ms": 1000 * statistics.median(step_s),
            }
            if "val" in self.splits:
                row["val_loss"], scores = self.evaluate("val")
                row.update({f"val_{name}": value for name, value in scores.items()})
                val = scores[metric.name]
                if metric.better(val, state.best_val):
                    state.best_val, state.best_epoch = val, epoch
                    state.best_weights = {
                        k: v.detach().clone() for k, v in self.model.state_dict().items()
                    }
            self.scheduler.step()
            state.epoch = epoch
            state.history.append(row)
            state.epoch_s.append(epoch_s)
            state.step_s.append(step_s)
            if t.checkpoint:  # first, so that history.csv never runs ahead of the checkpoint
                self.save_checkpoint()
            self.write_history()
            self.logger.log(row, step=epoch)
            log.info(
                "epoch %d/%d  %s",
                epoch,
                t.epochs,
                "  ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"),
            )
        self.epoch = state.epoch

    def write_history(self) -> None:
        write_text(
            self.out_dir / HISTORY_FILE, pd.DataFrame(self.state.history).to_csv(index=False)
        )

    # -- results --------------------------------------------------------------------------
    def test(self) -> dict[str, Any]:
        state, names = self.state, [m.name for m in self.task.recorded_metrics]
        if self.select is Select.best_val and state.best_weights is not None:
            self.model.load_state_dict(state.best_weights)
        results: dict[str, Any] = {f"val/{name}": None for name in names}
        if "val" in self.splits:
            results.update({f"val/{k}": v for k, v in self.evaluate("val")[1].items()})
        test = self.splits["test"]
        predict(self.model, self.task, test.take(slice(0, 2)), 2)  # warm-up
        sync(self.device)
        start = time.perf_counter()
        out = predict(self.model, self.task, test, self.cfg.trainer.eval_batch_size)
        sync(self.device)
        infer_s = time.perf_counter() - start
        results.update({f"test/{k}": v for k, v in self.task.scores(out, test).items()})
        results["test_loss"] = float(self.task.loss(out, test, self.class_weights))
        results["time/infer_ms_per_seq"] = 1000 * infer_s / len(test)
        write_outputs(self.out_dir / OUTPUTS_FILE, out, test)
        # Beside the last epoch's score, the best validation epoch's: the other protocol of the
        # references (the ODE-LSTM scripts restore their best checkpoint), never selected on test.
        results.update({f"test_at_best_val/{name}": None for name in names})
        if self.select is Select.last and state.best_weights is not None:
            self.model.load_state_dict(state.best_weights)
            best = predict(self.model, self.task, test, self.cfg.trainer.eval_batch_size)
            results.update(
                {f"test_at_best_val/{k}": v for k, v in self.task.scores(best, test).items()}
            )
        return results

    def timing(self) -> dict[str, float]:
        epochs = self.state.epoch_s
        steady = epochs[1:] or epochs
        steps = [s for epoch in (self.state.step_s[1:] or self.state.step_s) for s in epoch]
        return {
            "time/epoch_s": statistics.median(steady),
            "time/train_s": sum(epochs),
            "time/step_ms": 1000 * statistics.median(steps),
            "time/probe_ms": Probe(tuple(self.state.probe_ms)).ms,
            "time/probe_spread": Probe(tuple(self.state.probe_ms)).spread,
        }

    def metrics(self, results: dict[str, Any]) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "task": self.task.name,
            "model": cfg.model.name,
            "experiment": self.experiment,
            "seed": cfg.seed,
            "protocol": cfg.task.protocol.value,
            "metric": self.task.metric.name,
            "extra_metrics": [m.name for m in self.task.extra_metrics],
            **results,
            "select": self.select.value,
            "best_epoch": self.state.best_epoch,
            "epochs": self.state.epoch,
            "train_size": len(self.task.splits["train"]),
            "train_limit": cfg.task.train_limit,
            "n_params": self.n_params,
            **self.timing(),
            "mem/peak_mb": peak_memory_mb(self.device),
            "device": str(self.device),
            "device_name": self.state.device_names[-1],  # the last piece's machine
            "device_names": self.state.device_names,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            **self.cpu_settings,
            "host": socket.gethostname(),
            "python": platform.python_version(),
            "git_commit": self.state.code_versions[0],
            "git_commits": self.state.code_versions,
            "started_at": self.state.started_at,
            "finished_at": _now(),
            "resumes": self.state.resumes,
            "run_dir": str(self.out_dir),
            **{f"note/{k}": v for k, v in self.task.notes.items()},
        }

    def write_failure(self, err: Exception) -> None:
        write_json(
            self.out_dir / FAILED_FILE,
            {
                "reason": f"{type(err).__name__}: {err}",
                "epoch": getattr(err, "epoch", self.epoch),
                "step": getattr(err, "step", None),
                "epochs_completed": self.state.epoch,
                "task": getattr(self.cfg.task, "name", None),
                "model": getattr(self.cfg.model, "name", None),
                "seed": self.cfg.seed,
                "experiment": self.experiment,
                "config": self.config_yaml,
                "failed_at": _now(),
            },
        )

    def check_output_folder(self) -> None:
        """Refuse to resume, or to count as done, a run of another configuration."""
        stored = self.out_dir / CONFIG_FILE
        has_results = (self.out_dir / METRICS_FILE).exists() or self.checkpoint_path.exists()
        if not (has_results and stored.exists()):
            return
        changes = config_changes(stored.read_text(), self.config_yaml)
        if changes:
            raise OutputConflict(
                f"{self.out_dir} holds a run of another configuration ({'; '.join(changes)}): "
                "give this run its own output folder (hydra.run.dir=... or hydra.sweep.dir=...)"
                " or delete that folder to start over"
            )

    def interrupted_message(self, stop: Interrupted) -> str:
        epochs = self.cfg.trainer.epochs
        if self.epoch == 0:
            where = "while setting up"
        elif self.epoch > self.state.epoch:
            where = f"during epoch {self.epoch} of {epochs}"
        else:
            where = f"after epoch {self.epoch} of {epochs}"
        if self.saved_epoch:
            kept = f"the checkpoint of epoch {self.saved_epoch} is kept in {self.out_dir}"
        else:
            kept = "no checkpoint had been written, so the run will start over"
        return f"{stop} received {where}: stopped; {kept}. To resume, {self.resume_hint}"

    def run(self) -> dict[str, Any]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with exclusive(self.out_dir):
            return self.run_alone()

    def run_alone(self) -> dict[str, Any]:
        metrics_path = self.out_dir / METRICS_FILE
        self.check_output_folder()
        if metrics_path.exists():
            if self.cfg.trainer.skip_done:
                log.info("%s exists: skipping this run (trainer.skip_done=true)", metrics_path)
                return json.loads(metrics_path.read_text())
            log.info("%s exists and trainer.skip_done=false: training from scratch", metrics_path)
            for name in (METRICS_FILE, CHECKPOINT_FILE, HISTORY_FILE, OUTPUTS_FILE):
                (self.out_dir / name).unlink(missing_ok=True)
        (self.out_dir / FAILED_FILE).unlink(missing_ok=True)
        write_text(self.out_dir / CONFIG_FILE, self.config_yaml)
        with stop_on_signals():
            try:
                return self.train_and_test(metrics_path)
            except Interrupted as stop:
                self.logger.finish(exit_code=128 + stop.signum)
                log.error(self.interrupted_message(stop))
                raise SystemExit(128 + stop.signum) from None
            except Exception as err:
                self.write_failure(err)
                log.error(
                    "run failed: %s: %s (see %s)",
                    type(err).__name__,
                    err,
                    self.out_dir / FAILED_FILE,
                )
                self.logger.finish(exit_code=1)
                raise
            except BaseException:  # a launcher's own exit, e.g. submitit requeueing a job
                self.logger.finish(exit_code=1)
                raise

    def train_and_test(self, metrics_path: Path) -> dict[str, Any]:
        self.setup()
        if self.checkpoint_path.exists():
            self.load_checkpoint()
            # a checkpoint of code that recorded no version or machine
            for recorded in (self.state.code_versions, self.state.device_names):
                if not recorded:
                    recorded.append(None)
        for recorded, now in (
            (self.state.code_versions, self.code_version),
            (self.state.device_names, device_name(self.device)),
        ):
            if not recorded or recorded[-1] != now:
                recorded.append(now)
        log.info(
            "%s on %s: %d parameters, device %s, %d threads, %s allocator, output in %s",
            self.cfg.model.name,
            self.task.name,
            self.n_params,
            self.device,
            torch.get_num_threads(),
            self.cpu_settings["allocator"],
            self.out_dir,
        )
        self.logger = open_logger(self.cfg, self.experiment, self.out_dir, self.state.logger_id)
        self.state.logger_id = self.logger.run_id
        self.state.probe_ms.extend(probe(self.device).readings)
        self.fit()
        self.state.probe_ms.extend(probe(self.device).readings)
        metrics = self.metrics(self.test())
        self.logger.summary(metrics)
        self.logger.finish(exit_code=0)
        write_json(metrics_path, metrics)  # last: a folder with metrics.json is a finished run
        metric = self.task.metric.name
        log.info(
            "test %s=%.4g, test_loss=%.4g", metric, metrics[f"test/{metric}"], metrics["test_loss"]
        )
        return metrics


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def config_changes(old_yaml: str, new_yaml: str) -> list[str]:
    """The settings that affect results and differ between two run configs, as ``key: a -> b``."""
    old, new = (flatten(yaml.safe_load(text) or {}) for text in (old_yaml, new_yaml))
    changes = []
    for key in sorted(old.keys() | new.keys()):
        runtime = any(key == k or key.startswith(f"{k}.") for k in RUNTIME_KEYS)
        if not runtime and old.get(key, "(absent)") != new.get(key, "(absent)"):
            changes.append(f"{key}: {old.get(key, '(absent)')} -> {new.get(key, '(absent)')}")
    return changes


def train(
    cfg: RunConfig,
    out_dir: Path,
    experiment: str | None = None,
    config_yaml: str = "",
    resume_hint: str | None = None,
) -> dict:
    """Train, test and write ``metrics.json`` into ``out_dir``; returns the metrics.

    A folder that already holds a checkpoint of the same configuration resumes from it;
    one with ``metrics.json`` returns it at once (``trainer.skip_done``). ``resume_hint``
    completes the message printed on SIGINT/SIGTERM (how to resume).
    """
    os.makedirs(out_dir, exist_ok=True)
    return Trainer(cfg, out_dir, experiment, config_yaml, resume_hint).run()
