"""What a search needs before its first trial: a validation split, the metric's direction,
and the study's trials left RUNNING by a killed process put back (cfc_bench.tune.study).

:class:`SearchGuard` is a Hydra callback (conf/config.yaml): it runs in the process that
launches a multirun, before the sweeper is created, and does nothing unless the sweeper is
Optuna's. A refused search stops there with one line and a non-zero exit, before any data loads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from cfc_bench.errors import ConfigError
from cfc_bench.metrics import Metric

log = logging.getLogger(__name__)


def searching(sweeper: DictConfig | Any) -> bool:
    """Whether the sweeper of a Hydra config (``hydra.sweeper``) is Optuna's: a search whose
    jobs return their validation score."""
    return "optuna" in str(getattr(sweeper, "_target_", "") or "").lower()


def search_metric(task: DictConfig) -> Metric:
    """The metric a search of ``task`` (the composed ``task`` node) optimises, or a
    ConfigError when the task has no validation split under these settings."""
    settings = OmegaConf.to_object(task)
    name = getattr(settings, "name", "?")
    if not settings.has_validation():
        protocol = getattr(settings.protocol, "value", settings.protocol)
        raise ConfigError(
            f"task {name} has no validation split under these settings "
            f"(task.protocol={protocol}), and a search may not "
            "choose settings on the test split: use a protocol that holds out validation data "
            "(task.protocol=default for physionet; task.val_samples=N for xor and et_smnist)"
        )
    metric = type(settings).metric
    if metric is None:
        raise ConfigError(
            f"task {name} does not declare its metric (TaskConfig.metric), so the direction "
            "of a search is unknown: declare it in the task's config class"
        )
    return metric


def direction(metric: Metric) -> str:
    return "maximize" if metric.higher_is_better else "minimize"


def check_search(config: DictConfig) -> Metric:
    """The search's metric, once the task has a validation split and the sweeper optimises
    in the metric's direction; else a ConfigError saying what to change."""
    metric = search_metric(config.task)
    wanted, given = direction(metric), str(config.hydra.sweeper.direction)
    if given.rsplit(".", 1)[-1].lower() != wanted:
        raise ConfigError(
            f"hydra.sweeper.direction={given}, but {metric.name} is better "
            f"{'higher' if metric.higher_is_better else 'lower'}: "
            f"set hydra.sweeper.direction={wanted}"
        )
    return metric


class SearchGuard(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not searching(config.hydra.sweeper):
            return
        try:
            check_search(config)
        except ConfigError as err:
            raise SystemExit(f"cfc-bench: error: {err}") from None
        # SQLite creates the study's file, not its folder
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
        from cfc_bench.tune.study import recover

        sweeper = config.hydra.sweeper
        for number in recover(str(sweeper.storage), str(sweeper.study_name)):
            log.warning(
                "trial %d was left running by a process that no longer exists: recorded as "
                "failed (interrupted) and queued to run again with its parameters",
                number,
            )
