"""The run folder's lifecycle: its files, its lock, and what a folder already holding a run means.

A run folder holds ``config.yaml`` (the run's resolved config), ``checkpoint.pt`` (after every
epoch), ``history.csv`` (one row per epoch), then ``test_outputs.npz`` and, last,
``metrics.json``: a folder with ``metrics.json`` is a finished run. A run that fails writes
``failed.json`` (why, at which epoch and step) instead. ``.lock`` exists while a process
trains the run: one process at a time trains a folder, and a folder that holds results of
another configuration is refused, untouched.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from cfc_bench.config import RUNTIME_KEYS, flatten
from cfc_bench.errors import OutputConflict
from cfc_bench.io import atomic_write, write_json, write_text
from cfc_bench.tasks.base import SequenceData

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
FAILED_FILE = "failed.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.yaml"
LOCK_FILE = ".lock"
OUTPUTS_FILE = "test_outputs.npz"


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the block, so that one process at a time trains a run.

    The kernel drops the lock when its holder ends, however it ends (SIGKILL included); a
    holder that ends normally also removes ``.lock``, while still holding it. A process that
    opened the file before its removal and locks it afterwards holds a lock on a removed file:
    it sees that the path no longer names the file it locked, and tries again.
    """
    path = folder / LOCK_FILE
    while True:
        lock = open(path, "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise OutputConflict(
                f"{folder} is in use by {holder}: wait until it ends, or give this run "
                "its own output folder"
            ) from None
        except OSError as err:  # file systems without flock (Lustre mounted without it)
            log.warning(
                "cannot lock %s (%s): runs in the same folder are not detected", folder, err
            )
            with lock:
                yield
            return
        try:
            if os.stat(path).st_ino == os.fstat(lock.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        lock.close()  # locked a file its holder has just removed
    with lock:
        lock.truncate(0)
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        lock.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # before the lock is released (on close)


def config_changes(
    old_yaml: str, new_yaml: str, defaults: dict[str, Any] | None = None
) -> list[str]:
    """The settings that affect results and differ between two run configs, as ``key: a -> b``.

    A key absent from one side stands for its schema default (``defaults``, from
    :func:`cfc_bench.config.schema_defaults`), so that a setting added since the older run
    was made, at the default that keeps the old behaviour, is no change.
    """
    old, new = (flatten(yaml.safe_load(text) or {}) for text in (old_yaml, new_yaml))
    defaults = defaults or {}
    changes = []
    for key in sorted(old.keys() | new.keys()):
        runtime = any(key == k or key.startswith(f"{k}.") for k in RUNTIME_KEYS)
        before, after = (side.get(key, defaults.get(key, "(absent)")) for side in (old, new))
        if not runtime and before != after:
            changes.append(f"{key}: {before} -> {after}")
    return changes


@dataclass
class RunFolder:
    path: Path

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def failed(self) -> Path:
        return self.path / FAILED_FILE

    def check_conflict(self, config_yaml: str, defaults: dict[str, Any] | None = None) -> None:
        """Refuse to resume, or to count as done, a run of another configuration."""
        stored = self.path / CONFIG_FILE
        if not ((self.metrics.exists() or self.checkpoint.exists()) and stored.exists()):
            return
        changes = config_changes(stored.read_text(), config_yaml, defaults)
        if changes:
            raise OutputConflict(
                f"{self.path} holds a run of another configuration ({'; '.join(changes)}): "
                "give this run its own output folder (hydra.run.dir=... or hydra.sweep.dir=...)"
                " or delete that folder to start over"
            )

    def start(
        self, config_yaml: str, skip_done: bool, defaults: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Prepare the folder for training; the recorded metrics of a finished run instead
        when ``skip_done`` (a finished run is trained again from scratch otherwise)."""
        self.check_conflict(config_yaml, defaults)
        if self.metrics.exists():
            if skip_done:
                log.info("%s exists: skipping this run (trainer.skip_done=true)", self.metrics)
                return json.loads(self.metrics.read_text())
            log.info("%s exists and trainer.skip_done=false: training from scratch", self.metrics)
            for name in (METRICS_FILE, CHECKPOINT_FILE, HISTORY_FILE, OUTPUTS_FILE):
                (self.path / name).unlink(missing_ok=True)
        self.failed.unlink(missing_ok=True)
        write_text(self.path / CONFIG_FILE, config_yaml)
        return None

    def write_history(self, history: list[dict[str, Any]]) -> None:
        write_text(self.path / HISTORY_FILE, pd.DataFrame(history).to_csv(index=False))

    def write_outputs(self, out: torch.Tensor, data: SequenceData) -> None:
        """The test split's model outputs, targets and mask, compressed: a metric declared later
        is computed from them without retraining (``numpy.load(path)``: ``out``, ``y``,
        ``mask``)."""
        arrays = {
            "out": out.detach().float().cpu().numpy(),
            "y": data.y.cpu().numpy(),
            "mask": data.mask.cpu().numpy(),
        }
        atomic_write(self.path / OUTPUTS_FILE, lambda f: np.savez_compressed(f, **arrays))

    def write_failure(self, record: dict[str, Any]) -> None:
        write_json(self.failed, record)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.metrics, metrics)  # last: a folder with metrics.json is a finished run
