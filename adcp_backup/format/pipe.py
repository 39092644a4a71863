"""A bounded pipe of byte chunks between two threads, with end, error and cancel: what the age layers run on."""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import IO

logger = logging.getLogger(__name__)

# Bytes held between the two threads: memory stays flat whatever the stream's size.
CHANNEL_LIMIT = 1 << 20
JOIN_TIMEOUT = 60.0


class Cancelled(Exception):
    """The other side of a channel went away; the worker stops."""


class Channel:
    """A bounded FIFO of byte chunks between one producing and one consuming thread, with end and cancel."""

    def __init__(self, limit: int = CHANNEL_LIMIT) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._limit = limit
        self._cond = threading.Condition()
        self._finished = False
        self._error: BaseException | None = None
        self.cancelled = False

    def send(self, data: bytes) -> None:
        with self._cond:
            while self._size >= self._limit and not self.cancelled:
                self._cond.wait()
            if self.cancelled:
                raise Cancelled()
            self._chunks.append(data)
            self._size += len(data)
            self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._finished = True
            self._error = error
            self._cond.notify_all()

    def receive(self, size: int) -> bytes:
        """Up to ``size`` bytes; b"" at the end; the producer's error once its data is used up."""
        with self._cond:
            while not self._chunks and not self._finished and not self.cancelled:
                self._cond.wait()
            if self.cancelled:
                raise Cancelled()
            if self._chunks:
                chunk = self._chunks[0]
                if len(chunk) <= size:
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[size:]
                    chunk = chunk[:size]
                self._size -= len(chunk)
                self._cond.notify_all()
                return chunk
            if self._error is not None:
                raise self._error
            return b""

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._chunks.clear()
            self._size = 0
            self._cond.notify_all()


class ChannelSink:
    """A writable file over the channel: what a producing library writes to."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._channel.send(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


class ChannelSource:
    """A readable file over the channel: what a consuming library reads from."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def read(self, size: int = -1) -> bytes:
        return self._channel.receive(size if size and size > 0 else CHANNEL_LIMIT)


class RecordingSource:
    """A stream that remembers an error of its own, so the worker reading it can tell it from the library's."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except BaseException as exc:
            self.error = exc
            raise


def join(thread: threading.Thread) -> None:
    """Wait for a worker (never the calling thread itself), and say so when it does not stop."""
    if thread is threading.current_thread() or not thread.is_alive():
        return
    thread.join(JOIN_TIMEOUT)
    if thread.is_alive():  # pragma: no cover - only when the underlying stream blocks for a minute
        logger.warning("The worker thread %s did not stop within %.0f s.", thread.name, JOIN_TIMEOUT)


def stop(channel: Channel, thread: threading.Thread) -> None:
    """Cancel the channel, so the worker's next send or receive ends it, and wait for the worker."""
    channel.cancel()
    join(thread)
