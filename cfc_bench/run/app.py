"""`cfc-bench train`: the Hydra application (single runs and ``-m`` multiruns).

A single run stops with a short message on errors that are the user's to fix (bad
settings, missing data, a diverging loss) and a traceback on anything else. In a multirun
a failed job is recorded (failed.json, the log) and the other jobs go on; the summary at
the end of the sweep (cfc_bench.run.callbacks) lists it and makes the command exit non-zero.

A job returns its score to the sweeper: the test metric, except under Hydra's Optuna sweeper
(a hyperparameter search, cfc_bench.tune), which is given the validation metric, never the
test's; a failed job returns None, which that sweeper records as a failed trial.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cfc_bench.config import register_configs, run_config
from cfc_bench.errors import ConfigError, DataError, OutputConflict, TrainingError
from cfc_bench.run.cores import available_cores, launcher_threads
from cfc_bench.run.folder import RunFolder
from cfc_bench.run.job import train
from cfc_bench.text import plural
from cfc_bench.tune.guard import searching

log = logging.getLogger(__name__)

register_configs()


def label_console(label: str) -> None:
    """Start every console line of this job with ``[label]``: jobs of a sweep that run at once
    share the console. The job's own log file stays as it is."""
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler and handler.formatter is not None:
            handler.setFormatter(Labelled(handler.formatter, label))


def job_label(out_dir: Path, sweep_dir: Path) -> str:
    """The job's folder within its sweep ("3_xor_lstm_seed1", "lstm/seed1"), whether either
    path is given relative to the working directory or absolute."""
    out, sweep = out_dir.resolve(), sweep_dir.resolve()
    return str(out.relative_to(sweep) if out.is_relative_to(sweep) else out)


class Labelled(logging.Formatter):
    def __init__(self, inner: logging.Formatter, label: str):
        super().__init__()
        self.inner, self.label = inner, label

    def format(self, record: logging.LogRecord) -> str:
        return f"[{self.label}] {self.inner.format(record)}"


@hydra.main(version_base="1.3", config_path="pkg://cfc_bench.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """Train one model on one task; its score (see the module docstring) is returned for
    Hydra sweepers."""
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    out_dir = Path(hydra_cfg.runtime.output_dir)
    if multirun:
        label_console(job_label(out_dir, Path(hydra_cfg.sweep.dir)))
    hint = (
        f"launch the sweep again with hydra.sweep.dir={hydra_cfg.sweep.dir}"
        if multirun
        else f"run the same command again with hydra.run.dir={out_dir}"
    )
    run_cfg = None
    try:
        run_cfg = run_config(cfg)
        if multirun and run_cfg.trainer.threads is None:
            run_cfg.trainer.threads = launcher_threads(hydra_cfg.launcher, available_cores())
            if run_cfg.trainer.threads is not None:
                log.info(
                    "trainer.threads unset: %s for this job (%s launcher)",
                    plural(run_cfg.trainer.threads, "torch thread"),
                    hydra_cfg.runtime.choices.get("hydra/launcher"),
                )
        metrics = train(
            run_cfg,
            out_dir,
            experiment=hydra_cfg.runtime.choices.get("experiment"),
            config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
            resume_hint=hint,
        )
    except (DataError, ConfigError, TrainingError) as err:
        if not multirun:  # the message says how to fix it: no traceback
            raise SystemExit(f"cfc-bench train: error: {err}") from None
        if isinstance(err, OutputConflict):  # the sweep itself points at the wrong folder
            raise
        if run_cfg is None:  # a setting refused before training began
            log.error("%s", err)
            RunFolder(out_dir).write_failure({"reason": f"{type(err).__name__}: {err}", "epoch": 0})
        return None  # recorded in failed.json and the log; the sweep goes on
    except Exception:
        if not multirun:
            raise
        log.exception("unexpected error; the sweep goes on with its other jobs")
        return None
    split = "val" if multirun and searching(hydra_cfg.sweeper) else "test"
    return metrics.get(f"{split}/{metrics['metric']}")
