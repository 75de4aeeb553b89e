"""The paper presets conf/experiment/<task>_<model>.yaml: one per task and model, the paper
protocol, a stated source for every value, and the per-model settings the reference scripts
vary (PhysioNet class weights, human-activity time scale); and every preset trains a reduced
epoch with a finite loss on the data mirror. tests/test_configs.py composes them."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cfc_bench.config import compose
from cfc_bench.run.folder import RunFolder
from cfc_bench.run.trainer import Trainer

EXPERIMENTS = Path(__file__).resolve().parents[1] / "conf" / "experiment"
TASKS = ("xor", "physionet", "person_activity", "walker", "et_smnist")
MODELS = ("cfc", "cfc_nogate", "cfs", "cfc_mmrnn", "ltc", "ode_rnn", "lstm", "gru_d", "ode_lstm")
PRESETS = [f"{task}_{model}" for task, model in itertools.product(TASKS, MODELS)]
# every other paper preset (one that includes /paper_preset): further baselines, preset only
# where the paper has their row
EXTRA = sorted(
    path.stem
    for path in EXPERIMENTS.glob("*.yaml")
    if path.stem not in PRESETS and "/paper_preset" in yaml.safe_load(path.read_text())["defaults"]
)
# baselines the paper did not tune, trained with one recipe per task (the headers say whose)
SHARED_RECIPE = (
    *("lstm", "gru_d", "ode_lstm", "ode_rnn"),
    *("ct_rnn", "cornn", "lipschitz_rnn", "phased_lstm", "ct_lstm"),
    *("ct_gru", "rnn_decay", "bidirectional_rnn", "gru_ode"),
)
# untuned presets with a recipe of their own (their headers say why)
OWN_RECIPE = {"walker_transformer", "person_activity_phased_lstm"}
# Presets whose model config is not named as their row: the ODE-LSTM scripts' ODE-RNN
# (`--model node`) is a CT-RNN without leak, run under the row's name.
MODEL_CONFIG = {f"{task}_ode_rnn": "ct_rnn" for task in ("xor", "walker", "et_smnist")}


def load(name: str) -> dict:
    return yaml.safe_load((EXPERIMENTS / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", [*PRESETS, *EXTRA])
def test_preset_uses_the_paper_protocol_and_names_its_sources(name: str) -> None:
    text = (EXPERIMENTS / f"{name}.yaml").read_text()
    preset = yaml.safe_load(text)
    task, model = next((t, name[len(t) + 1 :]) for t in TASKS if name.startswith(f"{t}_"))
    assert preset["defaults"] == [
        "/paper_preset",  # the paper protocol, stated once for every paper preset
        {"override /model": MODEL_CONFIG.get(name, model)},
        {"override /task": task},
    ]
    assert compose([f"experiment={name}"]).model.name == model
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
        names = (f"{task}_{m}" for m in SHARED_RECIPE)
        recipes = {
            name: load(name)["trainer"]
            for name in names
            if name in (*PRESETS, *EXTRA) and name not in OWN_RECIPE
        }
        assert all(r == recipes[f"{task}_lstm"] for r in recipes.values()), task


# What each task needs to train on the data mirror these machines have (../shared/data): the
# MNIST training images are missing there, the person-activity data is a sample.
ON_THE_MIRROR = {
    "et_smnist": ["task.source_split=test"],
    "person_activity": ["task.source=person_activity_sample"],
}
# training sequences in the reduced epoch: two batches of the preset's size
REDUCED_BATCHES = 2
# presets whose reduced epoch takes more than a few seconds (LTC's unfolded ODE; ET-sMNIST's
# 256 steps through an ODE solver, GRU-D or CT-GRU's 8 traces): marked slow
SLOW = {
    *(f"{task}_ltc" for task in TASKS),
    *(f"et_smnist_{model}" for model in ("ode_rnn", "ode_lstm", "gru_d")),
    "physionet_ip_nets",  # its kernel sums over 192 reference times
    "person_activity_mtan",  # 512 units, batches of 256
    *(f"et_smnist_{model}" for model in ("ct_gru", "bidirectional_rnn", "gru_ode")),
    "physionet_latent_ode_ode",  # dopri5 over the union of a batch's ~2,000 time stamps
    "physionet_latent_ode_rnn",
}


def marks(name: str) -> list[pytest.MarkDecorator]:
    return [pytest.mark.slow] if name in SLOW else []


def preset_names() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS.glob("*.yaml") if p.stem != "demo")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data root (raw files and caches) for every preset: each task is prepared once."""
    return tmp_path_factory.mktemp("data")


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=marks(name)) for name in preset_names()],
)
def test_preset_trains_a_reduced_epoch_with_a_finite_loss(
    name: str, mirror: Path, data_root: Path, tmp_path: Path
) -> None:
    """Every preset, its model and optimiser as they stand, takes a few training steps on the
    real data without a non-finite loss (the trainer stops on one) or a non-finite weight."""
    (task,) = (d["override /task"] for d in load(name)["defaults"] if "override /task" in d)
    cfg = compose([f"experiment={name}", f"data.root={data_root}", f"data.mirror={mirror}"])
    overrides = [
        f"experiment={name}",
        f"data.root={data_root}",
        f"data.mirror={mirror}",
        "trainer.epochs=1",
        "trainer.progress=false",
        f"task.train_limit={REDUCED_BATCHES * cfg.trainer.batch_size}",
        *ON_THE_MIRROR.get(task, []),
    ]
    trainer = Trainer(compose(overrides), RunFolder(tmp_path), name, "")
    trainer.setup()
    loss, _, steps = trainer.train_epoch(1)
    assert len(steps) == REDUCED_BATCHES
    assert np.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
