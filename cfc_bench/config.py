"""Structured config schemas and their registration in Hydra's ConfigStore.

Every ``conf/model/*.yaml`` and ``conf/task/*.yaml`` extends the schema of the module
that implements it (``/schema/model/<module>@_here_``), so a wrong type or an unknown key
fails at composition, before any data is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import importlib
import os
import pkgutil
from dataclasses import dataclass, field
from enum import Enum
from types import ModuleType
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from cfc_bench import models, ranges, tasks
from cfc_bench.errors import ConfigError
from cfc_bench.models.base import ModelConfig
from cfc_bench.plugins import GROUPS, Plugin, discover
from cfc_bench.ranges import ranged
from cfc_bench.tasks.base import DataConfig, Select, TaskConfig


class Optimizer(Enum):
    adam = "adam"
    adamw = "adamw"
    rmsprop = "rmsprop"
    adamax = "adamax"  # the Latent-ODE code's optimizer


# Settings that change how a run is executed or logged but not its results (the thread count
# and flushed subnormals change rounding only; paper_preset and tuning describe the preset): a
# run may resume (or count as done) under other values of these, and tables compare runs
# without them.
RUNTIME_KEYS = (
    "paper_preset",
    "tuning",
    "device",
    "data",
    "logger",
    "trainer.threads",
    "trainer.retain_freed_memory",
    "trainer.flush_denormal",
    "trainer.progress",
    "trainer.skip_done",
    "trainer.checkpoint",
)


@dataclass
class TrainerConfig:
    epochs: int = ranged(10, ge=1)
    batch_size: int = ranged(128, ge=1)
    eval_batch_size: int = ranged(1024, ge=1)
    optimizer: Optimizer = Optimizer.adam
    lr: float = ranged(1e-3, gt=0)
    decay: float = ranged(1.0, gt=0)  # learning rate multiplied by this after every epoch
    min_lr: float = ranged(0.0, ge=0)  # the decay stops at this learning rate
    weight_decay: float = ranged(0.0, ge=0)  # the optimizer's: λ·w on every parameter
    # Keras' L2 kernel regulariser, as the TensorFlow scripts: λ·Σ W² over the model's kernels
    # (SequenceModel.kernels: weight matrices, no biases) added to the training loss.
    l2_kernel: float = ranged(0.0, ge=0)
    # RMSprop's moving-average factor of squared gradients: 0.99 is torch's default; the
    # TensorFlow scripts of the paper use Keras' (rho) 0.9, which takes smaller first steps.
    rmsprop_alpha: float = ranged(0.99, ge=0, lt=1)
    clip_norm: float | None = ranged(None, gt=0)  # gradient-norm clipping; None = off
    # cross-entropy weight per class
    class_weights: list[float] | None = ranged(None, ge=0)
    select: Select = Select.best_val  # weights evaluated on test (a task's protocol may override)
    threads: int | None = ranged(None, ge=1)  # torch intra-op threads; None = torch's default
    # Keep freed memory in the process (glibc's malloc) so that steps reuse it without page
    # faults (cfc_bench/bench/cpu_runtime.py); False leaves glibc's adaptive thresholds.
    retain_freed_memory: bool = True
    flush_denormal: bool = True  # CPU: subnormal floats (below 1.2e-38) become zero, faster
    progress: bool = True  # tqdm bar (only when the output is a terminal)
    skip_done: bool = True  # return at once when the run directory already has metrics.json
    checkpoint: bool = True  # save a resumable checkpoint after every epoch


class LoggerKind(Enum):
    none = "none"
    wandb = "wandb"


class WandbMode(Enum):
    offline = "offline"  # files under <run dir>/wandb; `wandb sync` uploads them later
    online = "online"
    disabled = "disabled"


@dataclass
class LoggerConfig:
    kind: LoggerKind = LoggerKind.none
    project: str = "cfc-bench"
    entity: str | None = None
    mode: WandbMode = WandbMode.offline  # WANDB_MODE in the environment takes precedence
    tags: list[str] = field(default_factory=list)


@dataclass
class TuningConfig:
    """How a tuned preset was chosen (``cfc-bench tune``, docs/tuning.md); empty otherwise."""

    trials: int | None = ranged(None, ge=1)  # the search's budget: trials on validation
    # the searched settings as Hydra sweep expressions, e.g. trainer.lr: tag(log, interval(...))
    space: dict[str, str] = field(default_factory=dict)
    trial: int | None = None  # the chosen trial's number in its study
    val: float | None = None  # its validation score (the task's metric)
    study: str | None = None  # the Optuna storage that holds the search


@dataclass
class RunConfig:
    model: Any = MISSING
    task: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    # The preset reproduces the paper (set by conf/paper_preset.yaml, which every paper preset
    # includes): only runs of such a preset are judged against the paper's numbers.
    paper_preset: bool = False
    tuning: TuningConfig = field(default_factory=TuningConfig)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree}
    return {
        k: v
        for key, value in tree.items()
        for k, v in flatten(value, f"{prefix}.{key}" if prefix else str(key)).items()
    }


def _submodules(package: ModuleType) -> list[ModuleType]:
    return [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
    ]


@functools.cache  # read once per process: register_configs and config_names ask often
def _schemas(package: ModuleType, base: type) -> dict[str, type]:
    """The config dataclass each module of ``package`` defines, keyed by the module's name."""
    found = {}
    for module in _submodules(package):
        for value in vars(module).values():
            if (
                dataclasses.is_dataclass(value)
                and isinstance(value, type)
                and issubclass(value, base)
                and value is not base
                and value.__module__ == module.__name__
            ):
                found[module.__name__.rsplit(".", 1)[1]] = value
    return found


def model_schemas() -> dict[str, type]:
    return _schemas(models, ModelConfig)


def task_schemas() -> dict[str, type]:
    return _schemas(tasks, TaskConfig)


def _register_resolvers() -> None:
    # The launching process's id goes into run folders, so that two sweeps started in the
    # same microsecond never share one (cached: every job of a sweep sees the same value).
    if not OmegaConf.has_resolver("pid"):
        OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True)
    # A short, stable folder name for a set of overrides (a search trial's folder: the same
    # settings find the same folder, and resume or skip there).
    if not OmegaConf.has_resolver("digest"):
        OmegaConf.register_new_resolver("digest", digest)


def digest(text: str) -> str:
    """The first 12 hex digits of the SHA-256 of ``text``."""
    return hashlib.sha256(str(text).encode()).hexdigest()[:12]


def plugins(group: str) -> tuple[dict[str, Plugin], dict[str, str]]:
    """The ``model`` or ``task`` plugins installed beside cfc-bench, and the broken ones'
    messages (:mod:`cfc_bench.plugins`)."""
    builtin = model_schemas() if group == "model" else task_schemas()
    return discover(group, frozenset([*builtin, *_packaged_names(group)]))


def register_configs() -> None:
    _register_resolvers()
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    for name, schema in model_schemas().items():
        store.store(group="schema/model", name=name, node=schema)
    for name, schema in task_schemas().items():
        store.store(group="schema/task", name=name, node=schema)
    for group in GROUPS:
        for name, plugin in plugins(group)[0].items():
            store.store(group=f"schema/{group}", name=name, node=plugin.schema)
            node = OmegaConf.structured(plugin.schema)
            node.name = name  # results are grouped by the option's name
            store.store(group=group, name=name, node=node)


def compose(overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The run config for command-line style ``overrides``, as ``cfc-bench train`` builds it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    register_configs()
    with initialize_config_module("cfc_bench.conf", version_base="1.3"):
        cfg = hydra_compose("config", overrides=list(overrides))
    return run_config(cfg)


def _packaged_names(group: str) -> list[str]:
    from importlib.resources import files

    folder = files("cfc_bench.conf").joinpath(group)
    return [p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")]


def config_names(group: str) -> list[str]:
    """The options of a config group (``model``, ``task``, ``experiment``...): the packaged
    YAML files, and for ``model`` and ``task`` the installed plugins."""
    names = _packaged_names(group)
    if group in GROUPS:
        names += plugins(group)[0]
    return sorted(names)


def unknown_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Dotted keys of ``node`` that its schema does not declare: keys added with Hydra's
    ``+key=value``, which a structured config accepts and then drops without a word."""
    schema = OmegaConf.get_type(node)
    known = (
        {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    )
    found = []
    for key in node:
        if known is not None and key not in known:
            found.append(f"{prefix}{key}")
        elif isinstance(child := node._get_node(key), DictConfig):
            found += unknown_keys(child, f"{prefix}{key}.")
    return found


def run_config(cfg: DictConfig) -> RunConfig:
    """The composed config as a :class:`RunConfig`, or a ConfigError naming the first key its
    schema does not declare or whose value lies outside its range (cfc_bench.ranges)."""
    for key in unknown_keys(cfg):
        parent, _, name = key.rpartition(".")
        schema = OmegaConf.get_type(OmegaConf.select(cfg, parent)) if parent else RunConfig
        options = [f.name for f in dataclasses.fields(schema)]
        close = difflib.get_close_matches(name, options, n=1)
        hint = f"did you mean {parent}.{close[0]}? " if close else ""
        raise ConfigError(
            f"unknown key '{key}': {hint}{parent or 'the config'} has {', '.join(options)}"
        )
    run_cfg = OmegaConf.to_object(cfg)
    ranges.check(run_cfg)
    return run_cfg


def schema_defaults(config: DictConfig) -> dict[str, Any]:
    """The dataclass defaults of every structured group of ``config`` (model, task, ...), as
    dotted keys with enums as their names: what a key absent from an older run's config
    stood for, since a setting is added with the default that keeps the old behaviour."""
    found = {}
    for group, node in config.items():
        schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        if schema is not None and dataclasses.is_dataclass(schema):
            plain = OmegaConf.to_container(OmegaConf.structured(schema), enum_to_str=True)
            found |= {f"{group}.{k}": v for k, v in flatten(plain).items()}
    return found
