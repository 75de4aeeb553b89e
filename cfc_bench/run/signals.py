"""SIGINT and SIGTERM as an exception, so that a run stops at once and keeps its checkpoint.

A run stopped this way exits with status 128 + signal number. A launcher that handles these
signals itself (submitit requeues jobs on pre-emption) keeps its handlers.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; the last epoch's checkpoint is kept for a resume."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    # A second signal of the same kind gets the default action (stop at once).
    signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    raise Interrupted(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into ``Interrupted`` for the duration of the block.

    Only where the signal still has Python's default handling, in the main thread: a
    launcher's own handlers (submitit's requeue, Ray's worker handlers) and an ignored
    SIGINT (``nohup``, background jobs) stay as they are.
    """
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    taken = {}
    if threading.current_thread() is threading.main_thread():
        for signum, default in defaults.items():
            if signal.getsignal(signum) is default:
                signal.signal(signum, _raise_interrupted)
                taken[signum] = default
    try:
        yield
    finally:
        for signum, default in taken.items():
            signal.signal(signum, default)
