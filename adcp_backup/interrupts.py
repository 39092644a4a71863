"""SIGTERM and SIGHUP treated as SIGINT: the work in progress unwinds, so its cleanup runs.

``systemctl stop``, ``docker stop``, Kubernetes and ``timeout`` send SIGTERM; a closed terminal sends SIGHUP.
Python's default for both is to die at once, skipping every ``finally``: a temporary file with the whole
backup stays behind, an S3 multipart upload stays open (and billed), a job stays "running". Inside
``signals_interrupt()`` they raise ``Interrupted`` (a KeyboardInterrupt, as SIGINT does), so temporary files
are removed, uploads aborted, locks released and jobs marked failed on the way out.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The process received SIGTERM or SIGHUP (or SIGINT) while it worked."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def _raise(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise Interrupted in the main thread; the old handlers come back
    after it. Elsewhere than in the main thread (where Python delivers signals) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise) for signum in HANDLED}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def describe(exc: BaseException) -> str:
    name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
    return f"Interrupted by {name}"
