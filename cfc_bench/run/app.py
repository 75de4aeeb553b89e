"""`cfc-bench train`: the Hydra application (single runs and ``-m`` multiruns).

A single run stops with a short message on errors that are the user's to fix (bad
settings, missing data, a diverging loss) and a traceback on anything else. In a multirun
a failed job is recorded (failed.json, the log) and the other jobs go on; the summary at
the end of the sweep (cfc_bench.run.callbacks) lists it and makes the command exit non-zero.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cfc_bench.config import register_configs
from cfc_bench.errors import ConfigError, DataError, OutputConflict, TrainingError
from cfc_bench.run.trainer import train

log = logging.getLogger(__name__)

register_configs()


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask: taskset, cgroups, SLURM)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def launcher_threads(launcher: DictConfig, cores: int) -> int | None:
    """Torch threads for one job of a multirun, so that parallel jobs share the cores.

    joblib runs ``n_jobs`` jobs side by side on this machine (``-1``: one per core,
    ``-2``: all cores but one, as in joblib): each gets ``cores // n_jobs`` threads.
    submitit (local or SLURM) gives each job ``cpus_per_task`` CPUs, Ray each task
    ``ray.remote.num_cpus`` (1 unless set). None: no parallel jobs, keep torch's default.
    """
    target = str(launcher.get("_target_", ""))
    if target.endswith("JoblibLauncher"):
        n_jobs = int(launcher.get("n_jobs") or 1)
        parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
        return max(1, cores // parallel) if parallel > 1 else None
    if target.endswith("RayLauncher"):
        return int(OmegaConf.select(launcher, "ray.remote.num_cpus", default=None) or 1)
    cpus = launcher.get("cpus_per_task")  # the submitit launchers
    return int(cpus) if cpus else None


@hydra.main(version_base="1.3", config_path="pkg://cfc_bench.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """Train one model on one task; the test metric is returned for Hydra sweepers."""
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    out_dir = Path(hydra_cfg.runtime.output_dir)
    run_cfg = OmegaConf.to_object(cfg)
    if multirun and run_cfg.trainer.threads is None:
        run_cfg.trainer.threads = launcher_threads(hydra_cfg.launcher, available_cores())
        if run_cfg.trainer.threads is not None:
            log.info(
                "trainer.threads unset: %d torch threads for this job (%s launcher)",
                run_cfg.trainer.threads,
                hydra_cfg.runtime.choices.get("hydra/launcher"),
            )
    hint = (
        f"launch the sweep again with hydra.sweep.dir={hydra_cfg.sweep.dir}"
        if multirun
        else f"run the same command again with hydra.run.dir={out_dir}"
    )
    try:
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
        return None  # recorded in failed.json and the log; the sweep goes on
    except Exception:
        if not multirun:
            raise
        log.exception("unexpected error; the sweep goes on with its other jobs")
        return None
    return metrics.get(f"test/{metrics['metric']}")
