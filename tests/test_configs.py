"""Every config composes; typed schemas reject wrong values before any data is loaded."""

from __future__ import annotations

import itertools

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf.errors import ConfigKeyError, ValidationError

from cfc_bench.config import RunConfig, compose, config_names
from cfc_bench.models.base import ModelConfig
from cfc_bench.tasks.base import TaskConfig

MODELS, TASKS, EXPERIMENTS = (config_names(g) for g in ("model", "task", "experiment"))


@pytest.mark.parametrize("model,task", list(itertools.product(MODELS, TASKS)))
def test_every_model_task_pair_composes(model: str, task: str) -> None:
    cfg = compose([f"model={model}", f"task={task}"])
    assert isinstance(cfg, RunConfig)
    assert isinstance(cfg.model, ModelConfig) and cfg.model.name == model
    assert isinstance(cfg.task, TaskConfig) and cfg.task.name


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment: str) -> None:
    cfg = compose([f"experiment={experiment}"])
    assert cfg.trainer.epochs > 0
    if experiment != "demo":  # presets are named <task>_<model>
        task = next(t for t in TASKS if experiment.startswith(f"{t}_"))
        assert (cfg.task.name, cfg.model.name) == (task, experiment[len(task) + 1 :])


def test_overrides_are_typed() -> None:
    cfg = compose(["model=cfc", "model.backbone_activation=silu", "trainer.epochs=3"])
    assert cfg.model.backbone_activation.name == "silu" and cfg.trainer.epochs == 3


@pytest.mark.parametrize(
    "override,error",
    [
        ("trainer.epochs=abc", ValidationError),
        ("trainer.optimizer=sgd", ValidationError),
        ("model.backbone_activation=swish", ValidationError),
        ("model.no_such_key=1", ConfigKeyError),
    ],
)
def test_bad_values_fail_at_composition(override: str, error: type) -> None:
    with pytest.raises((ConfigCompositionException, error)):
        compose([override])


def test_unknown_model_lists_options() -> None:
    with pytest.raises((ConfigCompositionException, MissingConfigException)) as err:
        compose(["model=nope"])
    message = str(err.value)
    assert "nope" in message and "cfc" in message and "lstm" in message
