"""Wording shared by the commands' messages."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, the noun in the plural unless count is 1: ``1 thread``,
    ``2 threads``; ``many`` for nouns whose plural is not noun + s."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"
