"""The non-editable package carries its Hydra configs and works outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("cfc_bench-*.whl")
    return found


def test_wheel_contains_configs(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n for n in names if n.startswith("cfc_bench/conf/")}
    expected = {
        f"cfc_bench/conf/{p.relative_to(REPO / 'conf').as_posix()}"
        for p in (REPO / "conf").rglob("*")
        if p.suffix in (".yaml", ".py")
    }
    assert expected and expected <= shipped
    assert "cfc_bench/conf/config.yaml" in shipped and "cfc_bench/conf/model/cfc.yaml" in shipped
    assert "cfc_bench/bench/settings/a.yaml" in names  # `cfc-bench bench --setting a`


def test_installed_wheel_runs_outside_the_repo(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import cfc_bench, sys; from cfc_bench.cli import main; print(cfc_bench.__file__);"
        "sys.exit(main(['train', 'model=cfc_nogate', 'task=xor', '--cfg', 'job']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith(str(target))  # not the editable source
    assert "mode: no_gate" in out.stdout and "name: xor" in out.stdout
