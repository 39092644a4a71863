"""Recognises a backup file by its content, peels its layers and returns the reader for its format."""
from __future__ import annotations

from typing import IO, Any, cast

from ..exceptions import InvalidBackup
from . import codecs
from .reader import NativeReader, looks_native


def open_reader(raw: IO[bytes], *, strict: bool = True, identity: Any = None) -> Any:
    """A reader for ``raw``: native v3 or a legacy format, compressed or not, encrypted or not."""
    head, stream = codecs.sniff(raw)
    if not head:
        raise InvalidBackup("the file is empty")
    encrypted = codecs.is_encrypted(head)
    if encrypted:
        from . import crypto

        head, stream = codecs.sniff(stream, 256)  # an armored file's first stanza lies past the first 64 bytes
        crypto.refuse_passphrase_file(head)
        stream = crypto.decrypting_reader(stream, identity=identity)
        head, stream = codecs.sniff(stream)
    compression = codecs.detect_compression(head)
    if compression != "none":
        stream = cast(IO[bytes], codecs.DecompressingReader(stream, compression))
    head, stream = codecs.sniff(stream, 4096)
    if not head.strip():
        raise InvalidBackup("the file holds no data")
    if looks_native(head):
        return NativeReader(stream, compression=compression, encrypted=encrypted, strict=strict)
    try:
        from . import legacy
    except ImportError:  # pragma: no cover
        legacy = None  # type: ignore[assignment]
    if legacy is not None:
        reader = legacy.open_legacy(head, stream, compression=compression, encrypted=encrypted, strict=strict)
        if reader is not None:
            return reader
    raise InvalidBackup("not an adcp-backup file: the content is neither the native format nor a known legacy format")
