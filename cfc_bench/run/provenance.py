"""Provenance of a run's figures: the code, machine, device and settings they were made with,
and the timing summary.

Timing rules: an epoch's time is the wall clock of its training loop only (batching,
forward, backward, optimizer step), with CUDA synchronised; evaluation is excluded. The
reported time per epoch is the median over the epochs after the first (the first pays
for warm-up); step time is the median over the steps of those epochs; inference time is
one pass over the test set divided by its size. Every figure goes out with the device,
torch version and thread count it was measured with, and the probe's reading of the
machine's speed (cfc_bench.bench.probe) at every start and after the last epoch.
"""

from __future__ import annotations

import functools
import platform
import resource
import socket
import statistics
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from cfc_bench.bench.probe import Probe
from cfc_bench.errors import ConfigError
from cfc_bench.run.checkpoint import State

CODE_PATHS = (":/cfc_bench", ":/conf", ":/pyproject.toml")


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"device='{spec}' is not valid: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device='{spec}' but CUDA is not available here: use device=cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device='{spec}' is not supported: use auto, cpu, cuda or cuda:N")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def code_version() -> str | None:
    """The git commit this package runs from, ``-dirty`` appended when its code (``cfc_bench``,
    ``conf``, ``pyproject.toml``) differs from that commit; None outside its own checkout (an
    installed package, or one inside another repository). Read once per process, at its first
    run: a sweep's later jobs run the code loaded then, whatever was committed since."""
    package = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(package), *args], capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != package.parent:
        return None
    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    changed = git("status", "--porcelain", "--", *CODE_PATHS)
    return f"{commit}-dirty" if changed else commit


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def note_piece(state: State, device: torch.device) -> None:
    """Record this piece of the run's code and machine, once per change.

    A checkpoint of code that recorded neither counts its epochs as of unknown code and
    machine (None), not as this piece's.
    """
    if state.resumes:
        for recorded in (state.code_versions, state.device_names):
            if not recorded:
                recorded.append(None)
    for recorded, current in (
        (state.code_versions, code_version()),
        (state.device_names, device_name(device)),
    ):
        if not recorded or recorded[-1] != current:
            recorded.append(current)


def timing(state: State) -> dict[str, float]:
    """The timing summary of a run (rules in this module's docstring)."""
    steady = state.epoch_s[1:] or state.epoch_s
    steps = [s for epoch in (state.step_s[1:] or state.step_s) for s in epoch]
    return {
        "time/epoch_s": statistics.median(steady),
        "time/train_s": sum(state.epoch_s),
        "time/step_ms": 1000 * statistics.median(steps),
        "time/probe_ms": Probe(tuple(state.probe_ms)).ms,
        "time/probe_spread": Probe(tuple(state.probe_ms)).spread,
    }


def record(state: State, device: torch.device, cpu_settings: dict[str, Any]) -> dict[str, Any]:
    """Where, when and with what code the run's figures were made (metrics.json's keys)."""
    return {
        **timing(state),
        "mem/peak_mb": peak_memory_mb(device),
        "device": str(device),
        "device_name": state.device_names[-1],  # the last piece's machine
        "device_names": state.device_names,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **cpu_settings,
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "git_commit": state.code_versions[0],
        "git_commits": state.code_versions,
        "started_at": state.started_at,
        "finished_at": now(),
        "resumes": state.resumes,
    }
