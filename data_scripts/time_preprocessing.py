"""Time each task's preprocessing: a cold build (parse raw files, build tensors, write the
cache) and a cached load, in fresh processes, into results/bench/preprocessing.csv.

    python data_scripts/time_preprocessing.py --mirror ../shared/data [--tasks physionet walker]

Each build runs in its own Python process (so no file is warm in this process's memory)
with an empty data root for the cold build; the process start-up and imports are not
counted, only ``TaskConfig.build``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from cfc_bench.io import write_text
from cfc_bench.run.provenance import device_name

# task -> overrides for what the mirror holds (the full ET-sMNIST and person-activity
# files are not in ../shared/data)
TASKS = {
    "physionet": [],
    "walker": [],
    "et_smnist": ["task.source_split=test"],
    "person_activity": ["task.source=person_activity_sample"],
}

CHILD = """
import json, sys, time
from cfc_bench.config import compose
cfg = compose(sys.argv[1:])
start = time.perf_counter()
task = cfg.task.build(cfg.data)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "sizes": {k: len(v) for k, v in task.splits.items()}}))
"""


def time_build(overrides: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *overrides], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mirror", required=True, help="folder laid out as <mirror>/<dataset>/")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--out", type=Path, default=Path("results/bench/preprocessing.csv"))
    args = parser.parse_args()
    rows = []
    for task in args.tasks:
        with tempfile.TemporaryDirectory() as root:
            overrides = [f"task={task}", f"data.root={root}", f"data.mirror={args.mirror}"]
            overrides += TASKS[task]
            cold = time_build(overrides)
            cached = time_build(overrides)
        rows.append(
            {
                "task": task,
                "overrides": " ".join(TASKS[task]),
                "cold_s": round(cold["seconds"], 3),
                "cached_s": round(cached["seconds"], 3),
                "splits": json.dumps(cold["sizes"]),
                "machine": device_name(torch.device("cpu")),
                "cores": torch.get_num_threads(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            }
        )
        print(f"{task}: cold {cold['seconds']:.2f} s, cached {cached['seconds']:.2f} s")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(args.out, buffer.getvalue())
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
