"""Every config composes; typed schemas reject wrong values before any data is loaded."""

from __future__ import annotations

import itertools

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf.errors import ConfigKeyError, ValidationError

from cfc_bench.config import RunConfig, compose, config_names
from cfc_bench.errors import ConfigError
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


@pytest.mark.parametrize(
    "override,message",
    [
        ("trainer.epochs=0", "trainer.epochs=0 is out of range: trainer.epochs must be >= 1"),
        ("trainer.batch_size=0", "trainer.batch_size must be >= 1"),
        ("trainer.eval_batch_size=-3", "trainer.eval_batch_size must be >= 1"),
        ("trainer.lr=0", "trainer.lr=0.0 is out of range: trainer.lr must be > 0"),
        ("trainer.lr=nan", "trainer.lr=nan is out of range"),
        ("trainer.decay=0", "trainer.decay must be > 0"),
        ("trainer.weight_decay=-1e-4", "trainer.weight_decay must be >= 0"),
        ("trainer.rmsprop_alpha=1", "trainer.rmsprop_alpha must be in [0, 1)"),
        ("trainer.clip_norm=0", "trainer.clip_norm must be > 0 (or null)"),
        ("trainer.class_weights=[1,-1]", "each value of trainer.class_weights must be >= 0"),
        ("trainer.threads=0", "trainer.threads must be >= 1 (or null)"),
        ("model.hidden=0", "model.hidden=0 is out of range: model.hidden must be >= 1"),
        ("model.backbone_dropout=1", "model.backbone_dropout must be in [0, 1)"),
        ("task.train_limit=0", "task.train_limit must be >= 1 (or null)"),
        ("task.train_samples=0", "task.train_samples must be >= 1"),
    ],
)
def test_values_out_of_range_fail_at_composition(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        compose(["model=cfc", "task=xor", override])
    assert message in str(err.value)


def test_edges_of_ranges_and_off_values_compose() -> None:
    cfg = compose(
        [
            "trainer.epochs=1",
            "trainer.rmsprop_alpha=0",
            "trainer.clip_norm=null",
            "trainer.class_weights=[0,2]",
            "trainer.threads=null",
            "trainer.decay=1e40",  # a growing learning rate is allowed (tests use it)
            "model=cfc",
            "model.backbone_layers=0",
        ]
    )
    assert (cfg.trainer.epochs, cfg.trainer.class_weights, cfg.model.backbone_layers) == (
        1,
        [0.0, 2.0],
        0,
    )


@pytest.mark.parametrize(
    "override,key",
    [
        ("+trainer.epoch=5", "trainer.epoch"),
        ("+model.no_such_key=1", "model.no_such_key"),
        ("+task.no_such_key=1", "task.no_such_key"),
        ("+data.no_such_key=1", "data.no_such_key"),
        ("+logger.no_such_key=1", "logger.no_such_key"),
        ("+no_such_key=1", "no_such_key"),
    ],
)
def test_keys_added_with_plus_are_refused(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        compose(["model=cfc", override])
