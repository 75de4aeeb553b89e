"""The paper presets conf/experiment/<task>_<model>.yaml: one per task and model, the paper
protocol, a stated source for every value, and the per-model settings the reference scripts
vary (PhysioNet class weights, human-activity time scale). tests/test_configs.py composes them."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

EXPERIMENTS = Path(__file__).resolve().parents[1] / "conf" / "experiment"
TASKS = ("xor", "physionet", "person_activity", "walker", "et_smnist")
MODELS = ("cfc", "cfc_nogate", "cfs", "cfc_mmrnn", "ltc", "ode_rnn", "lstm", "gru_d", "ode_lstm")
PRESETS = [f"{task}_{model}" for task, model in itertools.product(TASKS, MODELS)]
# further baselines, preset only where the paper has their row
EXTRA = ("xor_ct_rnn", "walker_ct_rnn")


def load(name: str) -> dict:
    return yaml.safe_load((EXPERIMENTS / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", [*PRESETS, *EXTRA])
def test_preset_uses_the_paper_protocol_and_names_its_sources(name: str) -> None:
    text = (EXPERIMENTS / f"{name}.yaml").read_text()
    preset = yaml.safe_load(text)
    task, model = next((t, name[len(t) + 1 :]) for t in TASKS if name.startswith(f"{t}_"))
    assert preset["defaults"] == [
        "/paper_preset",  # the paper protocol, stated once for every paper preset
        {"override /model": model},
        {"override /task": task},
    ]
    assert "protocol" not in preset.get("task", {})
    assert preset["trainer"]["epochs"] > 0 and preset["model"]["hidden"] > 0
    body = text.split("defaults:")[1].splitlines()
    values = [line for line in body if line.startswith("  ") and not line.strip().endswith(":")]
    values = [line for line in values if not line.strip().startswith("- override")]
    unsourced = [line for line in values if "  # " not in line]
    assert not unsourced, f"values without a source comment: {unsourced}"


def test_paper_presets_share_one_declaration() -> None:
    """conf/paper_preset.yaml: the field that makes a preset the paper's, and the protocol."""
    shared = yaml.safe_load((EXPERIMENTS.parent / "paper_preset.yaml").read_text())
    assert shared == {"paper_preset": True, "task": {"protocol": "paper"}}


@pytest.mark.parametrize(
    "model,weight",
    [("cfc", 11.69), ("cfc_mmrnn", 5.91), ("cfc_nogate", 7.73), ("cfs", 18.25), ("ltc", 8.0)],
)
def test_physionet_class_weights_of_the_reference(model: str, weight: float) -> None:
    assert load(f"physionet_{model}")["trainer"]["class_weights"] == [1.0, weight]


@pytest.mark.parametrize(
    "model,tau", [("cfc", 10.0), ("cfc_mmrnn", 10.0), ("cfc_nogate", 0.5), ("cfs", 0.1)]
)
def test_person_activity_time_scale_of_the_reference(model: str, tau: float) -> None:
    assert load(f"person_activity_{model}")["task"]["tau"] == tau


def test_untuned_models_share_a_recipe_within_a_task() -> None:
    """The baselines the paper did not tune train with one recipe per task (see the headers)."""
    for task in TASKS:
        recipes = {
            model: load(f"{task}_{model}")["trainer"]
            for model in ("lstm", "gru_d", "ode_lstm", "ode_rnn")
        }
        recipes.update(
            {m: load(f"{task}_{m}")["trainer"] for m in ("ct_rnn",) if f"{task}_{m}" in EXTRA}
        )
        assert all(r == recipes["lstm"] for r in recipes.values()), task
