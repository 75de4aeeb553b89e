"""Judging: one function per rule, each rule stated once, in its function's docstring.

The first paragraph of each rule's docstring is the rule as a reader of the tables needs it;
``results/README.md`` quotes it (:func:`rule`), with the constants below filled in where the
docstring names them in braces. Only rows run exactly as a paper preset are judged on their
score (:mod:`cfc_bench.report.presets`); speed claims are judged for every row that changes
no setting of its preset but the budget.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

# Probe times of a model's and CfC's runs further apart than this: the machine's speed, not
# the models', may explain their ratio, which is then not judged.
MACHINE_TOLERANCE = 1.25
# A speed claim reproduces when ours is within this factor of the paper's (and on its side of 1).
SPEED_FACTOR = 2.0
REFERENCE_MODEL = "cfc"  # speed-ups are times per epoch over this model's


def agreement(
    values: Sequence[float], paper_mean: float, paper_std: float
) -> tuple[float, float, bool | None]:
    """*agrees*: |ours − paper| ≤ 2·sqrt(s_ours² + s_paper²) (the tolerance is shown), and at
    least one seed within 2·sqrt(2)·s_paper of the paper (what one seed alone needs): seeds
    scattered far apart, say a run that diverged in every seed, must not agree by widening
    the tolerance; the cell then says "no seed within ± …". With one seed s_ours is taken as
    the paper's std, without a paper std s_paper as ours; with neither, nothing is judged.
    s is the standard deviation over seeds.

    Returns the tolerance for our mean, the one for a single seed, and whether ours agrees
    (None: not judged). ``values`` are our seeds' scores in the shown units.
    """
    scores = np.asarray(values, dtype=float)
    s_ours = float(scores.std(ddof=1)) if len(scores) > 1 else paper_std
    s_paper = paper_std if not math.isnan(paper_std) else s_ours
    if math.isnan(paper_mean) or math.isnan(s_ours) or math.isnan(s_paper):
        return math.nan, math.nan, None
    tolerance = 2 * math.hypot(s_ours, s_paper)
    seed_tolerance = 2 * math.hypot(s_paper, s_paper)
    mean_within = abs(float(scores.mean()) - paper_mean) <= tolerance
    a_seed_within = float(np.abs(scores - paper_mean).min()) <= seed_tolerance
    return tolerance, seed_tolerance, bool(mean_within and a_seed_within)


def verdict(value: Any) -> bool | None:
    """A table's ``agrees`` cell as True, False or None (pandas may hold NaN for "not judged")."""
    return bool(value) if isinstance(value, (bool, np.bool_)) else None


def machine_drifted(machine: float) -> bool:
    """*machine drift*: runs of one sweep folder may be days apart and a shared machine's
    speed drifts: where both sides timed the fixed probe workload (`time/probe_ms` in
    metrics.json), their readings' spreads (`time/probe_spread`) show a real difference, and
    the probes differ by more than {MACHINE_TOLERANCE}x, the cell shows the drift and the
    speed-up is not judged; runs without a probe or its spread may hold such drift unseen.

    ``machine`` is the probe's time over CfC's (NaN: not recorded, or within the readings'
    own noise).
    """
    return not (math.isnan(machine) or 1 / MACHINE_TOLERANCE <= machine <= MACHINE_TOLERANCE)


def speed_claim(ours: float, paper: float, machine: float = math.nan) -> str | None:
    """*speed claim*: it reproduces when our CfC speed-up and the paper's are on the same side
    of 1 and within a factor of {SPEED_FACTOR:g} of each other, "direction only" when only the
    side agrees; it is judged for REDUCED rows too (fewer epochs or sequences leave the time
    per step as it is), not for CHANGED ones, and not where the machine drifted.

    None: not judged (a ratio missing, or the machine's speed drifted).
    """
    if math.isnan(ours) or math.isnan(paper) or machine_drifted(machine):
        return None
    if (ours > 1) != (paper > 1):
        return "does not reproduce"
    return "reproduces" if 1 / SPEED_FACTOR <= ours / paper <= SPEED_FACTOR else "direction only"


def judged_speedup(row: pd.Series) -> tuple[float, float, bool]:
    """*judged speed-up*: a row's speed claim is judged on its timing-sweep speed-up where it
    has one (its models timed minutes apart), otherwise on the speed-up of its own sweep (whose
    runs may be days apart).

    Returns the speed-up, its machine ratio, and whether it is the timing sweep's.
    """
    paired = row.get("paired_speedup", math.nan)
    if not pd.isna(paired):
        return float(paired), float(row["paired_machine_ratio"]), True
    machine = row.get("machine_ratio", math.nan)
    return float(row["cfc_speedup"]), math.nan if pd.isna(machine) else float(machine), False


CONSTANTS = {"MACHINE_TOLERANCE": MACHINE_TOLERANCE, "SPEED_FACTOR": SPEED_FACTOR}


def rule(judge: Callable[..., Any]) -> str:
    """The rule a judging function applies, in words: its docstring's first paragraph on one
    line, with the constants filled in."""
    first = (inspect.getdoc(judge) or "").split("\n\n")[0]
    return " ".join(first.split()).format(**CONSTANTS)
