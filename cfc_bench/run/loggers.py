"""Experiment loggers: none, or Weights & Biases (offline unless told otherwise).

A logger sees a run's config once, one row of metrics per epoch, the final metrics
(test scores and timings) and how the run ended. A resumed run continues the wandb run it
started (same id, ``resume="allow"``), so an interrupted job stays one run in wandb.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cfc_bench.config import LoggerKind, RunConfig, WandbMode

log = logging.getLogger(__name__)


class NullLogger:
    run_id: str | None = None

    def log(self, row: dict[str, Any], step: int) -> None:
        pass

    def summary(self, metrics: dict[str, Any]) -> None:
        pass

    def finish(self, exit_code: int) -> None:
        pass


class WandbLogger:
    """One wandb run per job, grouped by task and model, tagged with the seed."""

    def __init__(
        self, cfg: RunConfig, experiment: str | None, out_dir: Path, run_id: str | None = None
    ):
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
            mode=os.environ.get("WANDB_MODE") or WandbMode(cfg.logger.mode).value,
            id=run_id,
            resume="allow" if run_id else None,
            # Jobs of a multirun may share a process (basic launcher, reused workers): each
            # job closes the run it opened, and a leftover one is finished, never reused.
            reinit="finish_previous",
        )
        self.run_id: str | None = self.run.id

    def log(self, row: dict[str, Any], step: int) -> None:
        self.run.log(row, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        self.run.summary.update({k: v for k, v in metrics.items() if v is not None})

    def finish(self, exit_code: int) -> None:
        """Close the run; a non-zero code marks it failed (or interrupted) in wandb."""
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as err:  # never let logging hide how the run itself ended
            log.warning("wandb run %s did not finish cleanly: %s", self.run_id, err)


def open_logger(
    cfg: RunConfig, experiment: str | None, out_dir: Path, run_id: str | None = None
) -> NullLogger | WandbLogger:
    """The configured logger; ``run_id`` continues an earlier run of a resumed job."""
    if LoggerKind(cfg.logger.kind) is LoggerKind.wandb:
        return WandbLogger(cfg, experiment, out_dir, run_id)
    return NullLogger()
