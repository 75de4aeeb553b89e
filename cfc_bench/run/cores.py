"""Sharing the CPU cores between the jobs of a sweep that run at the same time.

Jobs that run at once on one machine must not ask for more threads than it has cores:
oversubscribed, each epoch takes several times as long and timings mean nothing. joblib
runs ``n_jobs`` jobs side by side; submitit_local starts every job of a sweep at once;
Ray gives each task ``ray.remote.num_cpus``; SLURM gives each job ``cpus_per_task``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

from cfc_bench.text import plural

log = logging.getLogger(__name__)


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
    submitit (local or SLURM) gives each job ``cpus_per_task`` CPUs (for submitit_local,
    :class:`ShareCores` sets it when unset), Ray each task ``ray.remote.num_cpus`` (1 unless
    set). None: no parallel jobs, keep torch's default.
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


def jobs_at_once(config: DictConfig) -> int:
    """How many jobs the sweep hands its launcher at once (Hydra's basic sweeper: the whole
    sweep, or ``hydra.sweeper.max_batch_size`` jobs)."""
    sweeper = config.hydra.sweeper
    params = sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    try:
        overrides = OverridesParser.create().parse_overrides(arguments)
        batches = BasicSweeper.split_arguments(overrides, sweeper.get("max_batch_size"))
    except Exception:  # a sweep syntax that needs Hydra's config loader (glob of options)
        return available_cores()
    return max(1, *(len(batch) for batch in batches))


class ShareCores(Callback):
    """submitit_local starts every job it is handed at once: unless
    ``hydra.launcher.cpus_per_task`` is set, each job gets ``cores // jobs`` CPUs (at least 1),
    which the jobs then use as their torch threads (launcher_threads)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.launcher
        local = str(launcher.get("_target_", "")).endswith("submitit_launcher.LocalLauncher")
        if not local or launcher.get("cpus_per_task"):
            return
        jobs = jobs_at_once(config)
        cpus = max(1, available_cores() // jobs)
        with read_write(config.hydra):
            launcher.cpus_per_task = cpus  # the launcher's own setting
            # and each job's, composed again from these overrides
            config.hydra.overrides.hydra.append(f"hydra.launcher.cpus_per_task={cpus}")
        log.info(
            "submitit_local runs %s at once on %s: %s each (set hydra.launcher.cpus_per_task "
            "to choose)",
            plural(jobs, "job"),
            plural(available_cores(), "core"),
            plural(cpus, "CPU"),
        )
