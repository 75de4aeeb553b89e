"""Sweep callbacks: the jobs' log lines on the console while a sweep runs (JobLogs), and at
the end, which jobs finished, failed (and why) or stopped (SweepSummary).

Jobs of the submitit launchers run in processes whose output goes to files, not to the
console that launched the sweep; JobLogs follows each job's log (``<job dir>/train.log``)
and prints its new lines there, each after the job's folder name.

Registered as a Hydra callback in conf/config.yaml; it runs in the process that launched
the sweep, whatever the launcher, and reads only the job folders (every folder below the
sweep folder with a ``.hydra`` subfolder): ``metrics.json`` = done (``skipped`` when it was
already there at the start), ``failed.json`` = failed, neither = incomplete (killed or
interrupted; launching the sweep again resumes it). The summary is logged, written to
``<sweep dir>/summary.json``, and the command exits with status 1 when a job failed or
is incomplete.

Hydra rewrites a job's ``.hydra`` record (its overrides, the command's settings) before the
job starts, and the skipped job logs to its ``train.log``; so that launching a sweep again
does not change the record of the runs it skips, their ``.hydra`` files and ``train.log``
are read at the start and put back at the end.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from cfc_bench.io import atomic_write, write_json
from cfc_bench.run.folder import FAILED_FILE, METRICS_FILE

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p.parent for p in sweep_dir.rglob(".hydra") if p.is_dir())


def finished(sweep_dir: Path) -> dict[str, int]:
    """The modification time of every job's metrics.json, by job folder."""
    return {
        str(job.relative_to(sweep_dir)): (job / METRICS_FILE).stat().st_mtime_ns
        for job in job_dirs(sweep_dir)
        if (job / METRICS_FILE).exists()
    }


def records(sweep_dir: Path, jobs: dict[str, int], log_file: str) -> dict[Path, bytes]:
    """The ``.hydra`` files and the log file of the given jobs, by path."""
    found = {}
    for name in jobs:
        job = sweep_dir / name
        for path in [*sorted((job / ".hydra").glob("*")), job / log_file]:
            if path.is_file():
                found[path] = path.read_bytes()
    return found


def summarise(sweep_dir: Path, done_before: dict[str, int]) -> dict[str, Any]:
    """Jobs of a sweep folder by outcome; ``done_before`` is :func:`finished` at the start."""
    summary: dict[str, Any] = {
        "sweep_dir": str(sweep_dir),
        "done": [],
        "skipped": [],
        "failed": [],
        "incomplete": [],
    }
    done_now = finished(sweep_dir)
    for job in job_dirs(sweep_dir):
        name = str(job.relative_to(sweep_dir))
        if name in done_now:
            summary["skipped" if done_before.get(name) == done_now[name] else "done"].append(name)
        elif (job / FAILED_FILE).exists():
            try:
                failure = json.loads((job / FAILED_FILE).read_text())
                reason, epoch = failure.get("reason"), failure.get("epoch")
            except (OSError, ValueError) as err:
                reason, epoch = f"unreadable {FAILED_FILE}: {err}", None
            summary["failed"].append({"job": name, "reason": reason, "epoch": epoch})
        else:
            summary["incomplete"].append(name)
    summary["jobs"] = sum(len(summary[k]) for k in ("done", "skipped", "failed", "incomplete"))
    return summary


class SweepSummary(Callback):
    def __init__(self) -> None:
        self.done_before: dict[str, int] = {}
        self.records: dict[Path, bytes] = {}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        self.done_before = finished(sweep_dir) if sweep_dir.is_dir() else {}
        # Hydra's job log is named after the job (train.log).
        self.records = records(sweep_dir, self.done_before, f"{config.hydra.job.name}.log")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        summary = summarise(sweep_dir, self.done_before)
        skipped = {sweep_dir / name for name in summary["skipped"]}
        for path, content in self.records.items():
            if path.parent in skipped or path.parent.parent in skipped:
                atomic_write(path, lambda f, content=content: f.write(content))
        write_json(sweep_dir / SUMMARY_FILE, summary)
        log.info(
            "sweep %s: %d jobs: %d done, %d skipped (done before), %d failed, %d incomplete",
            sweep_dir,
            summary["jobs"],
            *(len(summary[k]) for k in ("done", "skipped", "failed", "incomplete")),
        )
        for failure in summary["failed"]:
            log.error("failed: %s: %s", failure["job"], failure["reason"])
        for name in summary["incomplete"]:
            log.error("incomplete: %s (launch the sweep again to resume it)", name)
        if summary["failed"] or summary["incomplete"]:
            raise SystemExit(
                f"cfc-bench train: {len(summary['failed'])} failed and "
                f"{len(summary['incomplete'])} incomplete of {summary['jobs']} jobs; "
                f"see {sweep_dir / SUMMARY_FILE}"
            )


class JobLogs(Callback):
    POLL_S = 0.5
    thread: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {}  # launchers pickle their callbacks into the jobs, which follow no logs

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "hydra_submitit_launcher" not in str(config.hydra.launcher.get("_target_", "")):
            return  # the other launchers' jobs print to this console themselves
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.log_file = f"{config.hydra.job.name}.log"
        # lines logged before this launch (a sweep launched again) are not repeated
        self.offsets = {path: path.stat().st_size for path in self.logs()}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.follow, daemon=True)
        self.thread.start()
        log.info(
            "each job logs to %s; its lines follow here, after the job's folder",
            self.sweep_dir / "<job>" / self.log_file,
        )

    def logs(self) -> list[Path]:
        return [job / self.log_file for job in job_dirs(self.sweep_dir)]

    def follow(self) -> None:
        while not self.stop.wait(self.POLL_S):
            self.echo()
        self.echo()

    def echo(self) -> None:
        """Print the complete lines added to every job log since the last call."""
        for path in self.logs():
            try:
                with open(path, "rb") as f:
                    start = self.offsets.get(path, 0)
                    if f.seek(0, 2) < start:  # the log was replaced: from its beginning
                        start = 0
                    f.seek(start)
                    text = f.read()
            except OSError:
                continue
            complete = text[: text.rfind(b"\n") + 1]
            self.offsets[path] = start + len(complete)
            job = path.parent.relative_to(self.sweep_dir)
            for line in complete.decode(errors="replace").splitlines():
                print(f"[{job}] {line}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join()
