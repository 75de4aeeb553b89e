"""Valid ranges of numeric settings, declared beside each config field and checked in one place.

A field declared ``epochs: int = ranged(10, ge=1)`` carries its range in the dataclass field's
metadata; :func:`check` walks a composed config (nested dataclasses, lists of numbers) and
raises :class:`~cfc_bench.errors.ConfigError` naming the first key out of range, its value
and the range. ``None`` is always accepted where the field's type allows it (``int | None``):
it means "off" or "unset" and is no number to check.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from cfc_bench.errors import ConfigError

RANGE = "range"  # the metadata key


@dataclass(frozen=True)
class Range:
    """Bounds on a number: ``ge <= x``, ``gt < x``, ``x <= le``, ``x < lt`` (each optional)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __contains__(self, x: float) -> bool:
        return (
            math.isfinite(x)
            and (self.ge is None or x >= self.ge)
            and (self.gt is None or x > self.gt)
            and (self.le is None or x <= self.le)
            and (self.lt is None or x < self.lt)
        )

    def __str__(self) -> str:
        low = f"[{self.ge:g}" if self.ge is not None else None
        low = f"({self.gt:g}" if self.gt is not None else low
        high = f"{self.le:g}]" if self.le is not None else None
        high = f"{self.lt:g})" if self.lt is not None else high
        if low and high:
            return f"in {low}, {high}"
        bounds = zip((">=", ">", "<=", "<"), (self.ge, self.gt, self.le, self.lt), strict=True)
        return " and ".join(f"{op} {x:g}" for op, x in bounds if x is not None)


def ranged(default: Any, **bounds: float) -> Any:
    """A dataclass field with ``default`` whose values must lie in ``Range(**bounds)``."""
    return dataclasses.field(default=default, metadata={RANGE: Range(**bounds)})


def check(cfg: Any, prefix: str = "") -> None:
    """Raise ConfigError for the first ranged field of ``cfg`` (a dataclass instance, searched
    recursively) whose value, or any number of whose list, lies outside its range."""
    for f in dataclasses.fields(cfg):
        key, value = f"{prefix}{f.name}", getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check(value, f"{key}.")
            continue
        bounds = f.metadata.get(RANGE)
        if bounds is None or value is None:
            continue
        numbers = value if isinstance(value, (list, tuple)) else [value]
        if not all(x in bounds for x in numbers):
            each = "each value of " if isinstance(value, (list, tuple)) else ""
            null = " (or null)" if "None" in str(f.type) else ""
            raise ConfigError(f"{key}={value} is out of range: {each}{key} must be {bounds}{null}")
