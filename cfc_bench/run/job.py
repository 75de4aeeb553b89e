"""One run, from its folder to its metrics: what happens around the training loop.

The folder is locked for the run (cfc_bench.run.folder); a folder holding the same
configuration's finished run returns its metrics (``trainer.skip_done``), one holding its
checkpoint resumes from it. SIGINT and SIGTERM stop the run at once with exit status
128 + signal number, keeping the last epoch's checkpoint (the epoch under way is trained
again on resume). Any other failure is recorded in ``failed.json`` and raised again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cfc_bench.config import RunConfig, schema_defaults
from cfc_bench.run import provenance
from cfc_bench.run.folder import RunFolder, exclusive
from cfc_bench.run.signals import Interrupted, stop_on_signals
from cfc_bench.run.trainer import Trainer

log = logging.getLogger(__name__)


def interrupted_message(trainer: Trainer, stop: Interrupted, resume_hint: str) -> str:
    epochs, folder = trainer.cfg.trainer.epochs, trainer.folder.path
    if trainer.epoch == 0:
        where = "while setting up"
    elif trainer.epoch > trainer.state.epoch:
        where = f"during epoch {trainer.epoch} of {epochs}"
    else:
        where = f"after epoch {trainer.epoch} of {epochs}"
    if trainer.saved_epoch:
        kept = f"the checkpoint of epoch {trainer.saved_epoch} is kept in {folder}"
    else:
        kept = "no checkpoint had been written, so the run will start over"
    return f"{stop} received {where}: stopped; {kept}. To resume, {resume_hint}"


def failure(trainer: Trainer, err: Exception) -> dict[str, Any]:
    """failed.json: why the run stopped, where, and what it was."""
    cfg = trainer.cfg
    return {
        "reason": f"{type(err).__name__}: {err}",
        "epoch": getattr(err, "epoch", trainer.epoch),
        "step": getattr(err, "step", None),
        "epochs_completed": trainer.state.epoch,
        "task": getattr(cfg.task, "name", None),
        "model": getattr(cfg.model, "name", None),
        "seed": cfg.seed,
        "experiment": trainer.experiment,
        "config": trainer.config_yaml,
        "failed_at": provenance.now(),
    }


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
    folder = RunFolder(Path(out_dir))
    folder.path.mkdir(parents=True, exist_ok=True)
    with exclusive(folder.path):
        defaults = schema_defaults(OmegaConf.structured(cfg))
        done = folder.start(config_yaml, cfg.trainer.skip_done, defaults)
        if done is not None:
            return done
        trainer = Trainer(cfg, folder, experiment, config_yaml)
        with stop_on_signals():
            try:
                return trainer.run()
            except Interrupted as stop:
                trainer.logger.finish(exit_code=128 + stop.signum)
                hint = resume_hint or f"train again into {folder.path}"
                log.error(interrupted_message(trainer, stop, hint))
                raise SystemExit(128 + stop.signum) from None
            except Exception as err:
                folder.write_failure(failure(trainer, err))
                log.error("run failed: %s: %s (see %s)", type(err).__name__, err, folder.failed)
                trainer.logger.finish(exit_code=1)
                raise
            except BaseException:  # a launcher's own exit, e.g. submitit requeueing a job
                trainer.logger.finish(exit_code=1)
                raise
