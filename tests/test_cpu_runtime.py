"""cfc_bench/bench/cpu_runtime.py: glibc keeps freed memory, so training steps stop page-faulting;
subnormal floats are flushed to zero on every thread of the pool.

The page faults are counted, not timed: `make bench`'s ``train_faults`` column, read from
bench processes that differ only in ``--retain-freed-memory``.
"""

from __future__ import annotations

import csv
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from cfc_bench.bench.cpu_runtime import allocator_name, retain_freed_memory

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt's trim and map thresholds are glibc's",
)

# Setting (b) of issue 3 at half its length: the [T,B,256] buffers of a CfC step are 8 MB.
SETTING_B = ["--batch", "256", "--steps", "32", "--inputs", "17", "--hidden", "64"]
SETTING_B += ["--set", "model.backbone_units=256", "--set", "model.backbone_activation=silu"]


def bench_faults(out: Path, retain: bool) -> dict[str, str]:
    flag = "--retain-freed-memory" if retain else "--no-retain-freed-memory"
    tag = "retained" if retain else "system"
    # Three warm-up steps first: the heap grows to its size there, and those faults are not
    # reuse (with one warm-up, the median of four steps reached 24-161 faults).
    args = [*SETTING_B, "--models", "cfc", "--threads", "2", "--warmup", "3", "--repeats", "8"]
    args.append(flag)
    args += ["--no-matmul-floor", "--no-memory", "--out", str(out), "--tag", tag]
    code = "import sys; from cfc_bench.bench.cli import main; sys.exit(main(sys.argv[1:]))"
    subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True)
    with open(out / f"{tag}.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    return row


@glibc
def test_retained_memory_leaves_a_cfc_training_step_without_page_faults(tmp_path: Path) -> None:
    system = bench_faults(tmp_path, retain=False)
    retained = bench_faults(tmp_path, retain=True)
    assert (system["allocator"], retained["allocator"]) == ("system", "retained")
    # A step allocates ~40 MB (10,000 pages) of tensors; kept memory leaves under 1 % fresh.
    # The system's count is not asserted: whether glibc trims depends on the interleaving of
    # the threads' requests (from tens to thousands per step between runs).
    assert float(retained["train_faults"]) < 100


FLUSH_CHECK = """
import sys, torch
from cfc_bench.bench.cpu_runtime import flush_denormal
flushed = flush_denormal(sys.argv[1] == "on")
torch.set_num_threads(2)
tiny = torch.full((1 << 20,), 1e-39)  # subnormal; split between both threads
print(flushed, int((tiny * 1.0 != 0).sum()))
"""


@pytest.mark.parametrize("mode", ["on", "off"])
def test_flushed_subnormals_are_zero_on_every_thread_of_the_pool(mode: str) -> None:
    run = subprocess.run(
        [sys.executable, "-c", FLUSH_CHECK, mode], check=True, capture_output=True, text=True
    )
    flushed, nonzero = run.stdout.split()
    if mode == "off":
        assert (flushed, nonzero) == ("False", str(1 << 20))
    else:
        assert flushed == "True", "this CPU has no flush-to-zero mode"
        assert nonzero == "0"  # the pool's second thread inherited the mode


@glibc
def test_the_state_is_named_as_applied() -> None:
    assert retain_freed_memory() is True
    # Process-wide and one-way: once retained, a run asking for the system's says so.
    assert allocator_name(False) == "retained" and allocator_name(True) == "retained"
