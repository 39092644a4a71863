"""Progress reporting: services call a callback; front ends decide how to show it."""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import IO, Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressEvent:
    phase: str  # "backup", "restore", "validate", "safety backup"
    table: str | None = None
    done: int = 0
    total: int | None = None
    message: str | None = None
    finished: bool = False


class ProgressCallback(Protocol):
    def __call__(self, event: ProgressEvent) -> None: ...


def silent(event: ProgressEvent) -> None:
    """The callback of callers that want no progress."""


class TerminalProgress:
    """A one-line bar redrawn in place on a terminal; periodic plain lines anywhere else."""

    def __init__(self, stream: IO[str] | None = None, *, interval: float = 5.0, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.width = width
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0
        self._last_key: tuple[str, str | None] | None = None
        self._drawn = False

    def __call__(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        key = (event.phase, event.table)
        if event.message:
            self._clear()
            self.stream.write(f"{event.message}\n")
            self.stream.flush()
            return
        if self.is_tty:
            if now - self._last < 0.1 and not event.finished and key == self._last_key:
                return
            self._last, self._last_key = now, key
            self.stream.write("\r" + self._bar(event) + "\x1b[K")
            if event.finished:
                self.stream.write("\n")
                self._drawn = False
            else:
                self._drawn = True
            self.stream.flush()
            return
        if event.done == 0 and not event.finished:
            self._last, self._last_key = now, key  # a table starts: its first line comes with rows or its end
            return
        if event.finished or key != self._last_key or now - self._last >= self.interval:
            self._last, self._last_key = now, key
            self.stream.write(self._line(event) + "\n")
            self.stream.flush()

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False

    def _line(self, event: ProgressEvent) -> str:
        what = f"{event.phase} {event.table}" if event.table else event.phase
        if event.total:
            pct = 100.0 * event.done / event.total if event.total else 100.0
            return f"{what}: {event.done:,}/{event.total:,} rows ({pct:.0f}%)" + (" done" if event.finished else "")
        return f"{what}: {event.done:,} rows" + (" done" if event.finished else "")

    def _bar(self, event: ProgressEvent) -> str:
        what = f"{event.phase} {event.table or ''}".strip()
        if event.total:
            fraction = min(1.0, event.done / event.total) if event.total else 1.0
            filled = int(self.width * fraction)
            bar = "#" * filled + "-" * (self.width - filled)
            return f"{what:<28} [{bar}] {event.done:,}/{event.total:,}"
        return f"{what:<28} {event.done:,} rows"
