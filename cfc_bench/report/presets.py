"""Comparing a run with its preset: the budget column, and whether a preset is the paper's.

A run that names a preset (``experiment``) is compared with it: ``conf/experiment/<preset>.yaml``
as it stands when its model has the run's model name (a preset may run a model config under
its row's name: the ODE-RNN presets run ``ct_rnn`` as ``ode_rnn``), otherwise composed with the
run's model (a preset that fixes no model, such as ``demo``, is compared with the model the
run used; where that does not compose, the preset as it stands, whose model then differs),
and the run's seed. The run's side is the resolved
``config.yaml`` beside its metrics or, without one, the ``epochs``, ``train_limit`` and
``protocol`` of its metrics. Every model, task or trainer setting that differs is stated:
fewer epochs, ``task.train_limit`` or data that a task notes as "NOT the paper protocol" make
a row REDUCED, anything else CHANGED. Settings that change neither what is learnt nor the
budget (``IGNORED``) are not compared.

Tuned presets (``cfc-bench tune``) record their search in a ``tuning`` block; their runs are
labelled "tuned (N trials on validation)", followed by any difference from the preset.

Paper presets. A preset is the paper's when it declares so: every paper preset includes
``conf/paper_preset.yaml``, which sets ``paper_preset: true`` (and the settings every paper
preset shares). Only runs of a paper preset are judged against the paper.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from cfc_bench.config import RUNTIME_KEYS, flatten, schema_defaults
from cfc_bench.text import plural

# settings that change neither what is learnt nor the budget
IGNORED = ("seed", *RUNTIME_KEYS, "trainer.eval_batch_size")
NOT_PAPER_DATA = "NOT the paper protocol"  # how a task's notes flag a smoke data subset
NOT_PAPER_PRESET = "not the paper preset"


def compose_presets(pairs: set[tuple[str, str]]) -> dict[tuple[str, str], DictConfig | None]:
    """Each (preset, model) composed (unresolved, so that the seed can be set per run).

    None where the preset does not exist or no longer composes.
    """
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException

    from cfc_bench.config import config_names, register_configs

    register_configs()
    known = set(config_names("experiment"))
    presets: dict[tuple[str, str], DictConfig | None] = dict.fromkeys(pairs)
    with initialize_config_module("cfc_bench.conf", version_base="1.3"):
        for name, model in sorted(p for p in pairs if p[0] in known):
            try:
                preset = compose("config", overrides=[f"experiment={name}"])
            except HydraException:  # a preset that no longer composes: no budget to compare
                continue
            if preset.model.name != model:
                try:
                    preset = compose("config", overrides=[f"experiment={name}", f"model={model}"])
                except HydraException:  # the preset's keys do not fit the run's model
                    pass
            presets[name, model] = preset
    return presets


def is_paper_preset(preset: DictConfig | None) -> bool:
    """Whether a composed preset declares itself a paper preset (``paper_preset: true``)."""
    return preset is not None and bool(preset.get("paper_preset", False))


def _plain(config: DictConfig, seed: Any) -> dict[str, Any]:
    config = config.copy()
    config.seed = seed  # interpolations such as task.resample_seed=${seed} follow the run
    flat = flatten(OmegaConf.to_container(config, resolve=True, enum_to_str=True))
    return {
        k: v for k, v in flat.items() if not any(k == i or k.startswith(f"{i}.") for i in IGNORED)
    }


class Budget(NamedTuple):
    text: str  # "as preset (N epochs)" or what is REDUCED and CHANGED
    matches: bool  # the run is its preset's, as the preset says
    changed: bool  # a setting other than the budget differs (or there is no preset)


def budget(run: dict[str, Any], preset: DictConfig | None) -> Budget:
    """How a run's settings differ from its preset's, and whether they match it."""
    notes = [str(v) for k, v in run.items() if k.startswith("note/") and NOT_PAPER_DATA in str(v)]
    if preset is None:
        what = "no preset" if run["experiment"] == "-" else f"preset {run['experiment']} not found"
        epochs = run.get("epochs")
        details = [plural(epochs, "epoch") if isinstance(epochs, int) else "? epochs"]
        if run.get("train_limit") is not None:
            details.append(f"task.train_limit={run['train_limit']}")
        details += [f"data: {n}" for n in notes]
        return Budget(f"{what}: {'; '.join(details)}", False, True)
    want = _plain(preset, run["seed"])
    if run.get("config") is not None:
        have = _plain(run["config"], run["seed"])
        # A setting added after the run is absent from its config.yaml; the run had the
        # behaviour that the setting's default keeps (new settings default to the old way).
        defaults = schema_defaults(preset)
        have |= {k: defaults[k] for k in want.keys() - have.keys() if k in defaults}
    else:  # no config.yaml: what metrics.json records of the budget and protocol
        have = {
            **want,
            "trainer.epochs": run.get("epochs"),
            "task.train_limit": run.get("train_limit"),
            "task.protocol": run.get("protocol", want.get("task.protocol")),
        }
    reduced, changed = [], []
    for key in sorted(want.keys() | have.keys()):
        mine, theirs = have.get(key, "-"), want.get(key, "-")
        if mine == theirs:
            continue
        if key == "trainer.epochs" and isinstance(mine, int) and isinstance(theirs, int):
            (reduced if mine < theirs else changed).append(f"{mine}/{theirs} epochs")
        elif key == "task.train_limit" and theirs is None:
            reduced.append(f"{key}={mine}")
        else:
            changed.append(f"{key}={mine} (preset: {theirs})")
    reduced += [f"data: {n}" for n in notes]
    parts = [f"REDUCED: {'; '.join(reduced)}"] if reduced else []
    parts += [f"CHANGED: {'; '.join(changed)}"] if changed else []
    text = " ".join(parts) or f"as preset ({plural(want['trainer.epochs'], 'epoch')})"
    return Budget(text, not parts, bool(changed))


def tuned_label(run: dict[str, Any], budget: Budget, preset: DictConfig | None) -> str:
    """A tuned run's budget text, or the plain one for a run that no search chose."""
    config = run.get("config")
    trials = OmegaConf.select(config, "tuning.trials") if config is not None else None
    if trials is None:
        return budget.text
    label = f"tuned ({plural(trials, 'trial')} on validation)"
    return label if preset is None or budget.matches else f"{label}; {budget.text}"


def label_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` (a DataFrame) with ``budget``, ``comparable`` (as its preset, and the preset is
    a paper preset: judged against the paper) and ``changed`` (a setting other than the budget
    differs) per run."""
    records = runs.to_dict("records")
    presets = compose_presets(
        {(r["experiment"], r["model"]) for r in records if r["experiment"] != "-"}
    )
    chosen = [presets.get((r["experiment"], r["model"])) for r in records]
    labels = [budget(r, p) for r, p in zip(records, chosen, strict=True)]
    paper = [is_paper_preset(p) for p in chosen]
    texts = [tuned_label(*row) for row in zip(records, labels, chosen, strict=True)]
    return runs.assign(
        budget=[
            t if p or not b.matches or t != b.text else f"{t}; {NOT_PAPER_PRESET}"
            for t, b, p in zip(texts, labels, paper, strict=True)
        ],
        comparable=[b.matches and p for b, p in zip(labels, paper, strict=True)],
        changed=[b.changed for b in labels],
    )
