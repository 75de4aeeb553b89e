"""The `cfc-bench` command as a user runs it: subprocesses, exit codes, files written."""

from __future__ import annotations

from pathlib import Path

import pytest
from runs import TINY, cli


def test_help_lists_subcommands(tmp_path: Path) -> None:
    out = cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    for command in ("train", "tables", "data", "bench"):
        assert f"  {command} " in out.stdout


def test_unknown_subcommand(tmp_path: Path) -> None:
    out = cli("fly", cwd=tmp_path)
    assert out.returncode == 2 and "unknown command 'fly'" in out.stderr


def test_train_help_shows_groups(tmp_path: Path) -> None:
    out = cli("train", "--help", cwd=tmp_path)
    assert out.returncode == 0
    assert "model: " in out.stdout and "cfc, cfc_mmrnn" in out.stdout
    assert "task: " in out.stdout and "xor" in out.stdout
    assert not (tmp_path / "outputs").exists()  # --help creates no run folder


@pytest.mark.parametrize(
    "override,message",
    [
        ("model=nope", "Available options in 'model'"),
        ("trainer.epochs=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
        ("model.no_such_key=1", "no_such_key"),
        ("trainer.optimizer=sgd", "Invalid value 'sgd'"),
        ("device=tpu", "device='tpu'"),
        ("trainer.epochs=0", "trainer.epochs=0 is out of range: trainer.epochs must be >= 1"),
        ("trainer.batch_size=0", "trainer.batch_size=0 is out of range: "),
        ("trainer.lr=-0.1", "trainer.lr=-0.1 is out of range: trainer.lr must be > 0"),
        ("+trainer.epoch=5", "unknown key 'trainer.epoch': did you mean trainer.epochs?"),
        ("+model.no_such_key=1", "unknown key 'model.no_such_key': model has name, hidden,"),
    ],
)
def test_bad_input_fails_cleanly(tmp_path: Path, override: str, message: str) -> None:
    run_dir = tmp_path / "run"
    out = cli("train", *TINY, override, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert out.returncode == 1
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not list(tmp_path.rglob("metrics.json"))


@pytest.mark.parametrize(
    "override,message",
    [
        ("trainer.epochs=-1", "trainer.epochs=-1 is out of range: trainer.epochs must be >= 1"),
        ("+data.no_such_key=1", "unknown key 'data.no_such_key': data has root, mirror"),
        ("+task.train_limt=5", "unknown key 'task.train_limt': did you mean task.train_limit?"),
    ],
)
def test_bad_settings_fail_before_data_loads(tmp_path: Path, override: str, message: str) -> None:
    """A task whose data is not here: the setting is refused, not the missing data."""
    data = [f"data.root={tmp_path / 'empty'}", f"data.mirror={tmp_path / 'none'}"]
    out = cli("train", "task=walker", *data, override, f"hydra.run.dir={tmp_path}/r", cwd=tmp_path)
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"cfc-bench train: error: {message}")
    assert "DataError" not in out.stdout
    assert not (tmp_path / "empty").exists()
