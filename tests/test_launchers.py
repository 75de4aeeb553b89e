"""Sweeps through Hydra's launchers (joblib, submitit, Ray), side by side, and on SLURM."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from runs import TIMEOUT, TINY, cli, environment, read_json, start, table_row

from cfc_bench.run.app import job_label
from cfc_bench.run.cores import available_cores, launcher_threads
from cfc_bench.text import plural

JOBS = ["0_xor_cfc_seed0", "1_xor_lstm_seed0"]


@pytest.mark.parametrize(
    "launcher,options,threads",
    [
        ("joblib", ["hydra.launcher.n_jobs=2"], max(1, available_cores() // 2)),
        # every job at once: the cores are split between them unless cpus_per_task is set
        ("submitit_local", ["hydra.launcher.timeout_min=10"], max(1, available_cores() // 2)),
        (
            "ray",  # a local Ray cluster of 2 CPUs, without the dashboard (quicker to start)
            [
                "+hydra.launcher.ray.init.num_cpus=2",
                "+hydra.launcher.ray.init.include_dashboard=false",
            ],
            1,
        ),
    ],
)
def test_two_job_sweep_then_tables(
    tmp_path: Path, launcher: str, options: list[str], threads: int
) -> None:
    sweep = tmp_path / "sweep"
    out = cli(
        "train",
        "-m",
        "model=cfc,lstm",
        *TINY,
        f"hydra/launcher={launcher}",
        *options,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Warning" not in out.stderr  # no Hydra migration warnings
    found = sorted(p.parent.name for p in sweep.rglob("metrics.json"))
    assert found == JOBS
    metrics = [read_json(sweep / job / "metrics.json") for job in JOBS]
    assert [m["model"] for m in metrics] == ["cfc", "lstm"]
    assert all(m["epochs"] == 2 and m["threads"] == threads for m in metrics)
    assert read_json(sweep / "summary.json")["done"] == JOBS
    assert not list(sweep.rglob(".lock"))
    if launcher == "submitit_local":
        cores = plural(available_cores(), "core")
        assert f"runs 2 jobs at once on {cores}: {plural(threads, 'CPU')} each" in out.stdout
    if launcher != "ray":  # each job's epoch lines on the console, saying whose they are
        epochs = [line for line in out.stdout.splitlines() if " - epoch 2/2 " in line]
        assert sorted(line.split()[0] for line in epochs) == [f"[{job}]" for job in JOBS]

    tables = cli("tables", "--runs", str(sweep), "--out", str(tmp_path / "tables"), cwd=tmp_path)
    assert tables.returncode == 0, tables.stderr
    assert not (tmp_path / "outputs").exists()  # neither command made a Hydra folder here
    for m in metrics:
        assert f"| {100 * m['test/accuracy']:.2f} (n=1) |" in table_row(tables.stdout, m["model"])
    assert "Failed runs" not in tables.stdout


def test_sweeps_started_together_get_their_own_folders(tmp_path: Path) -> None:
    # Default sweep folders (outputs/multirun/<date>/<time>-<pid>) in the same parent.
    procs = [start("train", "-m", *TINY, "seed=0,1", cwd=tmp_path) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err[-3000:]
    sweeps = sorted(tmp_path.glob("outputs/multirun/*/*"))
    assert len(sweeps) == 2
    assert sorted(s.name.rsplit("-", 1)[1] for s in sweeps) == sorted(str(p.pid) for p in procs)
    for sweep in sweeps:
        metrics = [read_json(p) for p in sorted(sweep.rglob("metrics.json"))]
        assert [m["seed"] for m in metrics] == [0, 1]
        assert all(Path(m["run_dir"]).resolve().parent == sweep.resolve() for m in metrics)
        assert read_json(sweep / "summary.json")["done"] == ["0_xor_cfc_seed0", "1_xor_cfc_seed1"]


def test_slurm_profile_submits_a_resumable_array_job(tmp_path: Path) -> None:
    """No SLURM here: a stand-in `sbatch` keeps the script submitit hands to it."""
    bin_dir, script = tmp_path / "bin", tmp_path / "submitted.sh"
    bin_dir.mkdir()
    stand_ins = {
        "sbatch": f'cp "$1" {script}\necho "sbatch: error: no SLURM controller" >&2\nexit 1\n',
        "srun": "exit 1\n",  # submitit only checks that it exists
    }
    for name, body in stand_ins.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(stat.S_IRWXU)
    env = environment(tmp_path, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    sweep = tmp_path / "sweep"
    out = cli(
        "train",
        "-m",
        "model=cfc,lstm",
        *TINY,
        "hydra/launcher=slurm",
        "hydra.launcher.partition=debug",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode != 0 and "no SLURM controller" in out.stderr
    lines = script.read_text().splitlines()
    for expected in [
        "#SBATCH --array=0-1%2",  # both jobs at once (array_parallelism caps it at 32)
        "#SBATCH --partition=debug",
        "#SBATCH --time=240",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16GB",
        "#SBATCH --nodes=1",
        "#SBATCH --signal=USR2@120",  # submitit requeues the job on this signal
        "#SBATCH --requeue",
        "export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK",
    ]:
        assert expected in lines
    assert not any("gpus" in line for line in lines)  # no GPU unless asked for
    assert any(f"-m submitit.core._submit {sweep}/.submitit/" in line for line in lines)


@pytest.mark.parametrize(
    "launcher,cores,threads",
    [
        ({"_target_": "hydra_plugins.x.JoblibLauncher", "n_jobs": 2}, 8, 4),
        ({"_target_": "hydra_plugins.x.JoblibLauncher", "n_jobs": 3}, 8, 2),
        ({"_target_": "hydra_plugins.x.JoblibLauncher", "n_jobs": -1}, 8, 1),
        ({"_target_": "hydra_plugins.x.JoblibLauncher", "n_jobs": -2}, 8, 1),
        ({"_target_": "hydra_plugins.x.JoblibLauncher", "n_jobs": -7}, 8, 4),
        ({"_target_": "hydra_plugins.x.JoblibLauncher", "n_jobs": 16}, 8, 1),
        ({"_target_": "hydra_plugins.x.JoblibLauncher", "n_jobs": 1}, 8, None),
        ({"_target_": "hydra_plugins.x.SlurmLauncher", "cpus_per_task": 6}, 64, 6),
        ({"_target_": "hydra_plugins.x.LocalLauncher", "cpus_per_task": None}, 8, None),
        ({"_target_": "hydra_plugins.x.RayLauncher", "ray": {"remote": {}}}, 8, 1),
        ({"_target_": "hydra_plugins.x.RayLauncher", "ray": {"remote": {"num_cpus": 3}}}, 8, 3),
        ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8, None),
    ],
)
def test_launcher_threads(launcher: dict, cores: int, threads: int | None) -> None:
    assert launcher_threads(OmegaConf.create(launcher), cores) == threads


def test_job_label_is_the_folder_within_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hydra gives the job's folder absolute and the sweep's as typed (make demo: relative)."""
    monkeypatch.chdir(tmp_path)
    sweep = Path("outputs/demo")
    assert job_label(tmp_path / "outputs/demo/0_xor_cfc_seed0", sweep) == "0_xor_cfc_seed0"
    assert job_label(tmp_path / "outputs/demo/lstm/seed1", sweep.resolve()) == "lstm/seed1"
