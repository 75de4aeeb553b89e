"""Experiment loggers: none, or Weights & Biases (offline unless told otherwise)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cfc_bench.config import LoggerKind, RunConfig


class NullLogger:
    def log(self, row: dict[str, Any], step: int) -> None:
        pass

    def summary(self, metrics: dict[str, Any]) -> None:
        pass

    def finish(self, ok: bool) -> None:
        pass


class WandbLogger:
    """One wandb run per job, grouped by task and model, tagged with the seed."""

    def __init__(self, cfg: RunConfig, experiment: str | None, out_dir: Path):
        import wandb

        task, model = cfg.task.name, cfg.model.name
        self.run = wandb.init(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=f"{task}/{model}",
            job_type=experiment or "train",
            name=f"{task}_{model}_seed{cfg.seed}",
            tags=[task, model, f"seed={cfg.seed}", *cfg.logger.tags],
            config=OmegaConf.to_container(
                OmegaConf.structured(cfg), resolve=True, enum_to_str=True
            ),
            dir=str(out_dir),
            mode=os.environ.get("WANDB_MODE", cfg.logger.mode),
            reinit="finish_previous",
        )

    def log(self, row: dict[str, Any], step: int) -> None:
        self.run.log(row, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        self.run.summary.update({k: v for k, v in metrics.items() if v is not None})

    def finish(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)


def open_logger(cfg: RunConfig, experiment: str | None, out_dir: Path) -> NullLogger | WandbLogger:
    if LoggerKind(cfg.logger.kind) is LoggerKind.wandb:
        return WandbLogger(cfg, experiment, out_dir)
    return NullLogger()
