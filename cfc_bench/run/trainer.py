"""The training loop: fits any model on any task, evaluates it and tests it.

One epoch is one pass over the training split in an order drawn from the run's own
generator; after it come validation (the task's metric decides the best epoch), the
learning-rate decay, and a checkpoint (cfc_bench.run.checkpoint), so that a run stopped
after any epoch resumes to the same numbers. The test split is scored with the weights the
selection rule names (the best validation epoch's, or the last), timed as provenance.py
states. The loop knows models and tasks only through their interfaces.
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import random
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cfc_bench.bench import cpu_runtime
from cfc_bench.bench.probe import probe, sync
from cfc_bench.config import Optimizer, RunConfig
from cfc_bench.errors import TrainingError
from cfc_bench.models.base import SequenceModel
from cfc_bench.run import checkpoint, provenance
from cfc_bench.run.folder import RunFolder
from cfc_bench.run.loggers import NullLogger, WandbLogger, open_logger
from cfc_bench.tasks.base import Select, SequenceData, Task
from cfc_bench.text import plural

log = logging.getLogger(__name__)


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


def l2_penalty(model: SequenceModel, weight: float) -> torch.Tensor:
    """Keras' L2 kernel regulariser: ``weight·Σ W²`` over the model's kernels (gradient
    ``2·weight·W``; biases and vectors untouched)."""
    return weight * sum(w.square().sum() for w in model.kernels())


def make_optimizer(cfg: RunConfig, params: Any) -> torch.optim.Optimizer:
    t = cfg.trainer
    kind = Optimizer(t.optimizer)
    if kind is Optimizer.adam:
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if kind is Optimizer.adamw:
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if kind is Optimizer.adamax:
        return torch.optim.Adamax(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.RMSprop(params, lr=t.lr, alpha=t.rmsprop_alpha, weight_decay=t.weight_decay)


class Trainer:
    """One run's model, splits and optimizer, trained into a :class:`RunFolder` (see ``run``)."""

    def __init__(self, cfg: RunConfig, folder: RunFolder, experiment: str | None, config_yaml: str):
        self.cfg = cfg
        self.folder = folder
        self.experiment = experiment
        self.config_yaml = config_yaml
        self.state = checkpoint.State(started_at=provenance.now())
        self.epoch = 0  # the epoch under way (0 before training, epochs while testing)
        self.saved_epoch = 0  # the epoch of the checkpoint on disk
        self.logger: NullLogger | WandbLogger = NullLogger()

    def setup(self) -> None:
        cfg = self.cfg
        self.cpu_settings = cpu_runtime.apply(
            cfg.trainer.retain_freed_memory, cfg.trainer.flush_denormal
        )
        if cfg.trainer.threads is not None:
            torch.set_num_threads(cfg.trainer.threads)
        self.device = provenance.resolve_device(cfg.device)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.task = cfg.task.build(cfg.data)
        self.select = self.task.select or Select(cfg.trainer.select)
        if "val" not in self.task.splits:
            self.select = Select.last
        self.splits = {k: v.to(self.device) for k, v in self.task.splits.items()}
        model = cfg.model.build(self.task.io).to(self.device)
        optimizer = make_optimizer(cfg, model.parameters())
        self.training = checkpoint.Training(
            model=model,
            optimizer=optimizer,
            scheduler=torch.optim.lr_scheduler.ExponentialLR(optimizer, cfg.trainer.decay),
            shuffle=torch.Generator().manual_seed(cfg.seed),
        )
        self.model, self.optimizer = model, optimizer
        weights = cfg.trainer.class_weights
        self.class_weights = (
            None
            if weights is None
            else torch.tensor(weights, dtype=torch.float32, device=self.device)
        )
        self.n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if self.folder.checkpoint.exists():
            self.state = checkpoint.load(self.folder.checkpoint, self.training, self.device)
            self.saved_epoch = self.state.epoch

    def train_epoch(self, epoch: int) -> tuple[float, float, list[float]]:
        """One pass over the training split: mean loss, wall-clock seconds, step seconds."""
        model, train, t = self.model, self.splits["train"], self.cfg.trainer
        model.train()
        order = torch.randperm(len(train), generator=self.training.shuffle).to(self.device)
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
            terms = {"the task loss": self.task.loss(out, batch, self.class_weights)}
            auxiliary = model.auxiliary_loss()  # the model's own terms (SequenceModel)
            if auxiliary is not None:
                terms["the model's auxiliary loss"] = auxiliary
            if t.l2_kernel:
                terms["the L2 kernel penalty"] = l2_penalty(model, t.l2_kernel)
            # reduce, not sum(): no extra "0 + loss" op on every training step
            loss = functools.reduce(operator.add, terms.values())
            if not torch.isfinite(loss):
                culprits = [name for name, term in terms.items() if not torch.isfinite(term)]
                hint = (
                    "the very first forward pass, before any update: the model cannot take "
                    "these inputs (an ODE model given negative elapsed times, as PhysioNet's "
                    "task.protocol=paper does, say), which no learning rate fixes"
                    if epoch == 1 and i == 0
                    else "lower trainer.lr or set trainer.clip_norm"
                )
                raise TrainingError(
                    f"non-finite training loss ({loss.item()}) at epoch {epoch}, step {i + 1} "
                    f"of {n_batches}, from {' and '.join(culprits) or 'the sum of its terms'}: "
                    f"{hint}",
                    epoch,
                    i + 1,
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if t.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_norm)
            self.optimizer.step()
            model.after_step()
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
            self.training.scheduler.step()
            for group in self.optimizer.param_groups:  # ExponentialLR decays the group's lr
                group["lr"] = max(group["lr"], t.min_lr)
            state.epoch = epoch
            state.history.append(row)
            state.epoch_s.append(epoch_s)
            state.step_s.append(step_s)
            if t.checkpoint:  # first, so that history.csv never runs ahead of the checkpoint
                checkpoint.save(self.folder.checkpoint, self.training, state, self.config_yaml)
                self.saved_epoch = epoch
            self.folder.write_history(state.history)
            self.logger.log(row, step=epoch)
            log.info(
                "epoch %d/%d  %s",
                epoch,
                t.epochs,
                "  ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"),
            )
        self.epoch = state.epoch

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
        self.folder.write_outputs(out, test)
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

    def metrics(self, results: dict[str, Any]) -> dict[str, Any]:
        """metrics.json: what ran, its scores, and their provenance."""
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
            **provenance.record(self.state, self.device, self.cpu_settings),
            "run_dir": str(self.folder.path),
            **{f"note/{k}": v for k, v in self.task.notes.items()},
        }

    def run(self) -> dict[str, Any]:
        """Set up (resuming from the folder's checkpoint), train, test; the metrics, written."""
        self.setup()
        provenance.note_piece(self.state, self.device)
        log.info(
            "%s on %s: %d parameters, device %s, %s, %s allocator, output in %s",
            self.cfg.model.name,
            self.task.name,
            self.n_params,
            self.device,
            plural(torch.get_num_threads(), "thread"),
            self.cpu_settings["allocator"],
            self.folder.path,
        )
        self.logger = open_logger(self.cfg, self.experiment, self.folder.path, self.state.logger_id)
        self.state.logger_id = self.logger.run_id
        self.state.probe_ms.extend(probe(self.device).readings)
        self.fit()
        self.state.probe_ms.extend(probe(self.device).readings)
        metrics = self.metrics(self.test())
        self.logger.summary(metrics)
        self.logger.finish(exit_code=0)
        self.folder.write_metrics(metrics)
        metric = self.task.metric.name
        log.info(
            "test %s=%.4g, test_loss=%.4g", metric, metrics[f"test/{metric}"], metrics["test_loss"]
        )
        return metrics
