"""The errors a user can fix: each message says what is wrong and what to do instead.

The command line turns them into one line and a non-zero exit, without a traceback.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting that cannot work here; the message says which and what to use instead."""


class OutputConflict(ConfigError):
    """The output folder holds a run of another configuration; nothing there is touched."""


class DataError(RuntimeError):
    """Raw data missing or damaged; the message says what was expected and how to fix it."""


class TrainingError(RuntimeError):
    """A run that cannot go on (a non-finite loss, say); recorded in failed.json."""

    def __init__(self, message: str, epoch: int, step: int):
        super().__init__(message)
        self.epoch, self.step = epoch, step
