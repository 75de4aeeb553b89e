"""Plugins: the example package of examples/custom_model installed beside cfc-bench, and
broken plugins that must leave the built-in models working."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA
from runs import TIMEOUT, cli, environment, read_json, table_row

EXAMPLE = REPO / "examples" / "custom_model"
NOISY_SINE = [
    "task=noisy_sine",
    "task.train_samples=128",
    "task.test_samples=64",
    "trainer.epochs=2",
    "trainer.threads=1",
    "device=cpu",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed into a temporary folder, as pip installs it for a user."""
    source = tmp_path_factory.mktemp("src") / "custom_model"
    shutil.copytree(EXAMPLE, source)  # the build writes beside its sources: not in the repo
    target = tmp_path_factory.mktemp("site")
    out = subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-compile"),
            *("--target", str(target), str(source)),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return target


def with_site(tmp_path: Path, site: Path) -> dict[str, str]:
    return environment(tmp_path, PYTHONPATH=str(site))


def test_plugin_sweep_beside_cfc_with_a_launcher_then_resume_and_tables(
    tmp_path: Path, site: Path
) -> None:
    env = with_site(tmp_path, site)
    sweep = tmp_path / "sweep"
    args = [
        "train",
        "-m",
        "model=cfc,decay_gru",
        *NOISY_SINE,
        "model.hidden=16",  # a key of both schemas, typed and checked for the plugin too
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
    ]
    out = cli(*args, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = ["0_noisy_sine_cfc_seed0", "1_noisy_sine_decay_gru_seed0"]
    assert sorted(p.parent.name for p in sweep.rglob("metrics.json")) == jobs
    plugin = read_json(sweep / jobs[1] / "metrics.json")
    assert plugin["model"] == "decay_gru" and plugin["task"] == "noisy_sine"
    assert plugin["metric"] == "mse" and plugin["epochs"] == 2
    assert "hidden: 16" in (sweep / jobs[1] / "config.yaml").read_text()

    again = cli(*args, cwd=tmp_path, env=env)  # resumable: finished runs are skipped
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_json(sweep / "summary.json")["skipped"] == jobs

    tables = cli(
        "tables", "--runs", str(sweep), "--out", str(tmp_path / "t"), cwd=tmp_path, env=env
    )
    assert tables.returncode == 0, tables.stderr[-3000:]
    row = table_row(tables.stdout, "decay_gru")
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == f"{plugin['test/mse']:.4f} (n=1)"
    assert cells[3] == "-"  # no paper number for a plugin
    assert re.match(r"\d+\.\d+x", cells[7])  # CfC's speed-up, from the same sweep


def test_plugin_sweep_through_submitit(tmp_path: Path, site: Path) -> None:
    sweep = tmp_path / "sweep"
    out = cli(
        "train",
        "-m",
        "model=decay_gru",
        *NOISY_SINE,
        "hydra/launcher=submitit_local",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=10",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=with_site(tmp_path, site),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = read_json(sweep / "0_noisy_sine_decay_gru_seed0" / "metrics.json")
    assert metrics["model"] == "decay_gru" and metrics["epochs"] == 2


def test_plugin_keys_are_typed_and_checked(tmp_path: Path, site: Path) -> None:
    env = with_site(tmp_path, site)
    out = cli("train", "model=decay_gru", *NOISY_SINE, "model.nope=1", cwd=tmp_path, env=env)
    assert out.returncode != 0
    assert "nope" in out.stderr and "DecayGRUConfig" in out.stderr
    out = cli("train", "model=decay_gru", *NOISY_SINE, "model.hidden=abc", cwd=tmp_path, env=env)
    assert out.returncode != 0 and "hidden" in out.stderr


def test_plugin_model_contract_bench_and_task_info(tmp_path: Path, site: Path) -> None:
    env = with_site(tmp_path, site)
    check = cli("check-model", "decay_gru", cwd=tmp_path, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "decay_gru: 4 of 4 checks passed" in check.stdout
    bench = cli(
        "bench",
        *("--models", "cfc,decay_gru", "--batch", "4", "--steps", "6", "--inputs", "3"),
        *("--hidden", "8", "--repeats", "2", "--threads", "1", "--no-memory"),
        *("--out", str(tmp_path / "bench")),
        cwd=tmp_path,
        env=env,
    )
    assert bench.returncode == 0, bench.stderr[-3000:]
    (csv,) = (tmp_path / "bench").glob("*.csv")
    assert "decay_gru" in csv.read_text()
    info = cli("data", "info", "noisy_sine", cwd=tmp_path, env=env)
    assert info.returncode == 0, info.stderr[-3000:]
    assert "train: 2,000 sequences" in info.stdout and "per-step mse" in info.stdout


def test_plugin_preset_found_through_the_search_path(tmp_path: Path, site: Path) -> None:
    if not (SHARED_DATA / "walker").is_dir():
        pytest.skip(f"Walker2d data not found at {SHARED_DATA / 'walker'}: CI has it")
    env = with_site(tmp_path, site)
    out = cli(
        "train",
        "hydra.searchpath=[pkg://cfc_example.conf]",
        "experiment=walker_decay_gru",
        f"data.mirror={SHARED_DATA}",
        f"data.root={tmp_path / 'data'}",
        "trainer.epochs=1",
        "task.train_limit=128",
        "trainer.threads=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["experiment"] == "walker_decay_gru" and metrics["model"] == "decay_gru"
    assert metrics["task"] == "walker" and metrics["train_size"] == 128


def fake_distribution(site: Path, name: str, entry_points: str, modules: dict[str, str]) -> Path:
    """An installed distribution ``name`` 0.1 in ``site``: its metadata, ``entry_points.txt``
    and module files, as pip leaves them (importlib.metadata finds it on the path)."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    for module, text in modules.items():
        (site / f"{module}.py").write_text(text)
    return site


def test_a_plugin_tasks_own_metric_is_found_by_name(tmp_path: Path) -> None:
    """A metric that a plugin task declares (cfc_bench.tasks.register_metric) is looked up by
    the name metrics.json gives, in a process that has not imported the plugin yet."""
    module = (
        "from dataclasses import dataclass\n"
        "from cfc_bench.metrics import squared_error\n"
        "from cfc_bench.tasks import Metric, TaskConfig, register_metric\n"
        "MAE = register_metric(Metric('mae', 'MAE', False, squared_error,\n"
        "    lambda out, y, mask: float((out - y).abs().mean()), digits=3))\n"
        "@dataclass\n"
        "class MAETaskConfig(TaskConfig):\n"
        "    pass\n"
    )
    site = fake_distribution(
        tmp_path / "site",
        "mae-task",
        "[cfc_bench.tasks]\nmae_task = mae_task:MAETaskConfig\n",
        {"mae_task": module},
    )
    code = "from cfc_bench.metrics import lookup; m = lookup('mae'); print(m.header, m.digits)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment(tmp_path, PYTHONPATH=str(site)),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "MAE 3"


BAD_MODULE = """
from dataclasses import dataclass

from cfc_bench.models import ModelConfig


def not_a_config():
    return None


@dataclass
class Shadow(ModelConfig):
    hidden: int = 4
"""


@pytest.fixture
def bad_site(tmp_path: Path) -> Path:
    """A package whose three model entry points are each broken in one way."""
    return fake_distribution(
        tmp_path / "bad-site",
        "bad-plugin",
        "[cfc_bench.models]\n"
        "missing = bad_plugin_missing:Config\n"
        "notconfig = bad_plugin:not_a_config\n"
        "lstm = bad_plugin:Shadow\n",
        {"bad_plugin": BAD_MODULE},
    )


def test_broken_plugins_are_named_and_builtins_keep_working(tmp_path: Path, bad_site: Path) -> None:
    env = environment(tmp_path, PYTHONPATH=str(bad_site))
    out = cli("train", "model=missing", "task=xor", cwd=tmp_path, env=env)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert (
        "entry point 'missing = bad_plugin_missing:Config' (group cfc_bench.models) of package "
        "'bad-plugin' 0.1 fails to import: ModuleNotFoundError" in out.stderr
    )
    out = cli("train", "-m", "model=cfc,notconfig", "task=xor", cwd=tmp_path, env=env)
    assert out.returncode == 1
    assert "names <function not_a_config" in out.stderr
    assert "not a dataclass subclassing cfc_bench.models.ModelConfig" in out.stderr

    run_dir = tmp_path / "run"
    out = cli(
        "train",
        *("model=lstm", "task=xor", "task.train_samples=64", "task.test_samples=32"),
        *("trainer.epochs=1", "model.hidden=4", "device=cpu", f"hydra.run.dir={run_dir}"),
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert read_json(run_dir / "metrics.json")["model"] == "lstm"  # the built-in, not Shadow
    assert "'lstm' is already a built-in model; rename the entry point" in out.stderr
    assert "the built-in models still work" in out.stderr
