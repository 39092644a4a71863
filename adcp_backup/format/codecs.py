"""Compression layers of a backup file, written by name and recognised on reading by their magic bytes."""
from __future__ import annotations

import gzip
import io
import zlib
from typing import IO, Any, Protocol

from .errors import ConfigurationError, InvalidBackup
from .optional import require

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
AGE_MAGIC = b"age-encryption.org/v1"
AGE_ARMOR_MAGIC = b"-----BEGIN AGE ENCRYPTED FILE-----"

SUFFIXES = {"none": "", "gzip": ".gz", "zstd": ".zst"}


class Writable(Protocol):
    """Where bytes are written: a file, the storage's hashing writer, or the next layer down."""

    def write(self, data: bytes, /) -> object: ...


class Sink(Writable, Protocol):
    """What a compressing or encrypting layer writes into: it is also flushed."""

    def flush(self) -> object: ...


def _igzip() -> Any:
    """ISA-L's gzip (the isal package) when installed: the same gzip format, about ten times faster."""
    try:
        from isal import igzip
    except ImportError:
        return None
    return igzip


def _zstandard() -> Any:
    return require("zstandard", needed_for="zstd compression", extra="zstd")


class _NoClose(io.RawIOBase):
    """Lets a compressor close its stream without closing the file underneath."""

    def __init__(self, raw: Sink) -> None:
        self._raw = raw

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        written = self._raw.write(b)
        return written if isinstance(written, int) else len(b)

    def flush(self) -> None:
        self._raw.flush()


class CompressedWriter:
    """A binary writer that compresses into ``raw``; ``close`` finishes the stream, not ``raw``."""

    def __init__(self, raw: Sink, compression: str, level: int | None = None) -> None:
        self.compression = compression
        if compression == "none":
            self._stream: Any = None
            self._raw = raw
        elif compression == "gzip":
            level = level if level is not None else 1
            igzip = _igzip()
            # ISA-L has levels 0 to 3; above that the standard library's zlib takes over.
            module = igzip if igzip is not None and level <= 3 else gzip
            self._stream = module.GzipFile(fileobj=_NoClose(raw), mode="wb", compresslevel=level, mtime=0)
        elif compression == "zstd":
            zstd = _zstandard()
            self._stream = zstd.ZstdCompressor(level=level if level is not None else 3).stream_writer(
                _NoClose(raw), closefd=False
            )
        else:
            raise ConfigurationError(f"Unknown compression {compression!r}: use none, gzip or zstd.")
        self._raw = raw

    def write(self, data: bytes) -> None:
        if self._stream is None:
            self._raw.write(data)
        else:
            self._stream.write(data)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class PrefixedReader(io.RawIOBase):
    """A reader that first returns bytes already taken from a stream to sniff it, then the rest."""

    def __init__(self, prefix: bytes, raw: IO[bytes]) -> None:
        self._prefix = prefix
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._raw.read(len(b))
        n = len(data)
        b[:n] = data
        return n


def sniff(raw: IO[bytes], size: int = 64) -> tuple[bytes, IO[bytes]]:
    """The first bytes of a stream, and a stream that still yields them."""
    head = b""
    while len(head) < size:
        chunk = raw.read(size - len(head))
        if not chunk:
            break
        head += chunk
    return head, io.BufferedReader(PrefixedReader(head, raw), buffer_size=1 << 20)


def detect_compression(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def is_encrypted(head: bytes) -> bool:
    return head.startswith(AGE_MAGIC) or head.startswith(AGE_ARMOR_MAGIC)


class DecompressingReader(io.RawIOBase):
    """Reads a compressed stream and turns the codec's own errors into InvalidBackup."""

    def __init__(self, raw: IO[bytes], compression: str) -> None:
        super().__init__()
        self.compression = compression
        self._raw = raw
        if compression == "gzip":
            self._stream: Any = (_igzip() or gzip).GzipFile(fileobj=raw, mode="rb")
        elif compression == "zstd":
            zstd = _zstandard()
            self._stream = zstd.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)
        else:
            self._stream = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            data: bytes = self._stream.read(size)
            return data
        except (OSError, EOFError, zlib.error) as exc:
            raise InvalidBackup(f"the {self.compression} stream is damaged or truncated ({exc})") from exc
        except Exception as exc:
            # zstandard's ZstdError and ISA-L's IsalError derive from Exception only
            if type(exc).__name__ in ("ZstdError", "IsalError"):
                raise InvalidBackup(f"the {self.compression} stream is damaged or truncated ({exc})") from exc
            raise

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        """Close the decompressor; the compressed stream underneath stays open."""
        if not self.closed and self._stream is not self._raw:
            self._stream.close()
        super().close()

