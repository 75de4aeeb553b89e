"""Helpers for tests that run `cfc-bench` as a user does: subprocesses, signals, files."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pandas as pd

# A run of a few seconds: 2 epochs of 128 sequences.
TINY = [
    "task=xor",
    "task.train_samples=128",
    "task.test_samples=64",
    "trainer.epochs=2",
    "model.hidden=8",
    "device=cpu",
]
# Epochs of about a second (64 steps), long enough to stop a run in the middle of one.
SLOW_EPOCHS = [
    "task=xor",
    "task.train_samples=1024",
    "task.test_samples=64",
    "trainer.epochs=4",
    "trainer.batch_size=16",
    "model=cfc",
    "model.hidden=8",
    "model.backbone_units=16",
    "trainer.threads=1",
    "device=cpu",
]
TIMEOUT = 600


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test process's environment, with wandb and Ray kept inside ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HYDRA_"))}
    env.update(
        PYTHONUNBUFFERED="1",
        WANDB_CONFIG_DIR=str(tmp_path / "wandb-home"),
        WANDB_CACHE_DIR=str(tmp_path / "wandb-home" / "cache"),
        WANDB_DATA_DIR=str(tmp_path / "wandb-home" / "data"),
        RAY_AUTH_MODE="disabled",  # no token written to ~/.ray for a throw-away local cluster
    )
    env.update(extra)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cfc_bench.cli", *args]


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(*args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env or environment(cwd),
    )


def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        command(*args),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or environment(cwd),
    )


def wait_into_epoch(proc: subprocess.Popen, run_dir: Path, done: int) -> None:
    """Return a quarter of an epoch after ``done`` epochs are on disk (history.csv)."""
    history = run_dir / "history.csv"
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"run ended early ({proc.returncode}): {proc.communicate()}")
        if history.exists():  # written atomically: never seen half-written
            rows = pd.read_csv(history)
            if len(rows) >= done:
                time.sleep(rows["epoch_s"].iloc[-1] / 4)
                return
        time.sleep(0.01)
    raise AssertionError(f"no {done} epochs in {history} after {TIMEOUT} s")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def table_row(markdown: str, model: str) -> str:
    """The one row of a `cfc-bench tables` Markdown table that holds runs of ``model``."""
    (row,) = [
        line for line in markdown.splitlines() if line.startswith(f"| {model} ") and "(n=" in line
    ]
    return row


def wandb_records(run_file: Path) -> list[Any]:
    """The records of a wandb run file (``run-<id>.wandb``, a LevelDB-style log).

    Layout: a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of chunks with
    a 7-byte header (CRC-32 seeded with the chunk type, length, type: full, first,
    middle, last); each record is a serialised ``wandb_internal_pb2.Record``.
    """
    from wandb.proto import wandb_internal_pb2

    raw = run_file.read_bytes()
    assert raw[:4] == b":W&B", f"{run_file} is not a wandb run file"
    block, pos, parts, records = 32768, 7, [], []
    while pos + 7 <= len(raw):
        left = block - pos % block
        crc, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if left < 7 or kind == 0:  # block trailer or padding
            pos += left
            continue
        data = raw[pos + 7 : pos + 7 + length]
        assert zlib.crc32(data, zlib.crc32(bytes([kind]))) == crc, f"corrupt chunk in {run_file}"
        parts.append(data)
        pos += 7 + length
        if kind in (1, 4):  # full or last chunk: a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            records.append(record)
            parts = []
    return records


def offline_runs(run_dir: Path) -> list[dict[str, Any]]:
    """Each offline wandb run of a job, oldest first: id, config, tags, history, summary, exit."""
    found = []
    for folder in sorted((run_dir / "wandb").glob("offline-run-*")):
        (run_file,) = folder.glob("run-*.wandb")
        run: dict[str, Any] = {"history": [], "summary": {}, "exit_code": None}
        for record in wandb_records(run_file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                r = record.run
                run.update(id=r.run_id, project=r.project, group=r.run_group, tags=list(r.tags))
                run["config"] = {u.key: json.loads(u.value_json) for u in r.config.update}
            elif kind == "history":
                row = {
                    "/".join(i.nested_key) or i.key: json.loads(i.value_json)
                    for i in record.history.item
                }
                run["history"].append(row)
            elif kind == "summary":
                for u in record.summary.update:
                    run["summary"]["/".join(u.nested_key) or u.key] = json.loads(u.value_json)
            elif kind == "exit":
                run["exit_code"] = record.exit.exit_code
        found.append(run)
    return found
