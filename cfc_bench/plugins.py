"""Models and tasks from other packages, found through entry points.

A package installed beside cfc-bench declares, in its own ``pyproject.toml``::

    [project.entry-points."cfc_bench.models"]
    my_rnn = "my_pkg.models:MyRNNConfig"

    [project.entry-points."cfc_bench.tasks"]
    my_task = "my_pkg.tasks:MyTaskConfig"

The entry point's name is the config option (``model=my_rnn``); its value is a dataclass
that subclasses :class:`~cfc_bench.models.ModelConfig` (or
:class:`~cfc_bench.tasks.TaskConfig`), whose defaults are the option's settings, typed and
checked like a built-in's. Its ``name`` is set to the entry point's name. The schema is
also stored as ``/schema/<group>/<name>``, so that the package's own YAML presets (found
through ``hydra.searchpath``) can extend it as the built-in configs do.

A plugin that cannot be used (it fails to import, is not such a dataclass, or takes the
name of a built-in option) is left out with a message naming the entry point, its package
and what is wrong; the built-in models and tasks keep working, and selecting the broken
option stops with that message.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from cfc_bench.errors import ConfigError
from cfc_bench.models.base import ModelConfig
from cfc_bench.tasks.base import TaskConfig

log = logging.getLogger(__name__)

# config group -> (entry-point group, the base class its dataclasses extend)
GROUPS: dict[str, tuple[str, type]] = {
    "model": ("cfc_bench.models", ModelConfig),
    "task": ("cfc_bench.tasks", TaskConfig),
}


@dataclass(frozen=True)
class Plugin:
    group: str  # "model" or "task"
    name: str  # the config option
    schema: type  # the dataclass
    origin: str  # the entry point and its package, for messages


class PluginError(ConfigError):
    """An entry point that cannot be used; the message names it, its package and why."""


def origin(entry: EntryPoint) -> str:
    dist = entry.dist
    package = f"package '{dist.name}' {dist.version}" if dist is not None else "an unknown package"
    return f"entry point '{entry.name} = {entry.value}' (group {entry.group}) of {package}"


def _load(group: str, entry: EntryPoint, builtin: Iterable[str]) -> Plugin:
    ep_group, base = GROUPS[group]
    where = origin(entry)
    if entry.name in builtin:
        raise PluginError(
            f"{where}: '{entry.name}' is already a built-in {group}; rename the entry point"
        )
    try:
        schema = entry.load()
    except Exception as err:  # any import-time failure of someone else's code
        raise PluginError(
            f"{where} fails to import: {type(err).__name__}: {err}; fix or uninstall that package"
        ) from None
    if not (
        isinstance(schema, type) and dataclasses.is_dataclass(schema) and issubclass(schema, base)
    ):
        raise PluginError(
            f"{where} names {schema!r}, which is not a dataclass subclassing "
            f"cfc_bench.{group}s.{base.__name__}; point it at the config dataclass"
        )
    return Plugin(group, entry.name, schema, where)


@functools.cache
def discover(group: str, builtin: frozenset[str]) -> tuple[dict[str, Plugin], dict[str, str]]:
    """The usable plugins of ``group`` by option name, and the broken ones' messages.

    Read once per process; a broken plugin is logged once as a warning.
    """
    found: dict[str, Plugin] = {}
    broken: dict[str, str] = {}
    for entry in sorted(entry_points(group=GROUPS[group][0]), key=lambda e: e.name):
        try:
            found[entry.name] = _load(group, entry, builtin)
        except PluginError as err:
            if entry.name not in builtin:  # selecting a built-in's name gets the built-in
                broken[entry.name] = str(err)
            log.warning("cfc-bench: %s (left out; the built-in %ss still work)", err, group)
    return found, broken


def check_selected(overrides: Iterable[str], broken: dict[str, dict[str, str]]) -> None:
    """Raise the message of a broken plugin that ``group=name`` overrides select."""
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        for name in value.split(","):  # a sweep: model=cfc,my_rnn
            if key in broken and name in broken[key]:
                raise PluginError(broken[key][name])
