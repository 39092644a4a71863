"""Recognises a backup file by its content, peels its layers and returns the reader for its format."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import IO, cast

from . import codecs, crypto, legacy
from .errors import InvalidBackup
from .events import BackupReader
from .families import TableLayout
from .provenance import TrailerVerifier
from .reader import DEFAULT_LIMITS, NativeReader, ReadLimits, looks_native

# Called only when the file is encrypted: the identities that may open it (raises when there are none).
IdentityLoader = Callable[[], Sequence[crypto.Identity]]


def _no_identity() -> Sequence[crypto.Identity]:
    return ()


@contextmanager
def open_reader(raw: IO[bytes], *, tables: Sequence[TableLayout], strict: bool = True,
                identities: IdentityLoader = _no_identity, limits: ReadLimits = DEFAULT_LIMITS,
                verify_trailer: TrailerVerifier | None = None) -> Iterator[BackupReader]:
    """A reader for ``raw``: native v3 or a legacy format, compressed or not, encrypted or not.

    ``tables`` are the registry's tables. The layers between ``raw`` and the reader (decryption in a worker
    thread, decompression) belong to the block: they are closed, and the decrypting thread is joined, when it
    ends, however it ends; ``raw`` stays open (its owner closes it, after the block)."""
    with ExitStack() as layers:
        head, stream = codecs.sniff(raw)
        if not head:
            raise InvalidBackup("the file is empty")
        encrypted = codecs.is_encrypted(head)
        if encrypted:
            head, stream = codecs.sniff(stream, 256)  # an armored file's first stanza lies past the first 64 bytes
            crypto.refuse_passphrase_file(head)
            stream = cast(IO[bytes], layers.enter_context(crypto.decrypting_reader(stream, identities())))
            head, stream = codecs.sniff(stream)
        compression = codecs.detect_compression(head)
        if compression != "none":
            stream = cast(IO[bytes], layers.enter_context(codecs.DecompressingReader(stream, compression)))
        head, stream = codecs.sniff(stream, 4096)
        if not head.strip():
            raise InvalidBackup("the file holds no data")
        reader: BackupReader | None
        if looks_native(head):
            reader = NativeReader(stream, tables=[t.name for t in tables], compression=compression,
                                  encrypted=encrypted, strict=strict, limits=limits, verify_trailer=verify_trailer)
        else:
            reader = legacy.open_legacy(head, stream, tables=tables, compression=compression, encrypted=encrypted,
                                        strict=strict, limits=limits)
        if reader is None:
            raise InvalidBackup("not an adcp-backup file: the content is neither the native format nor a known "
                                "legacy format")
        yield reader
