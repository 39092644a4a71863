"""Opens backup files for reading the way this installation does: with its table registry, its limits (the
ADCP_BACKUP_MAX_* settings), its age identities and its signing keys. Every reader of the app comes from here."""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO

from . import dataset, keys, signing
from .conf import backup_settings
from .format.crypto import Identity
from .format.detect import open_reader
from .format.events import BackupReader
from .format.reader import ReadLimits


def read_limits() -> ReadLimits:
    """The configured bounds of a reader."""
    return ReadLimits(max_line_length=backup_settings.MAX_LINE_LENGTH, max_problems=backup_settings.MAX_PROBLEMS,
                      line_limit_name="ADCP_BACKUP_MAX_LINE_LENGTH")


@contextmanager
def open_backup(raw: IO[bytes], *, strict: bool = True,
                identity: str | os.PathLike[str] | None = None) -> Iterator[BackupReader]:
    """A reader of ``raw`` for the block (see format.detect.open_reader): an encrypted file is opened with the
    identity file ``identity``, else ADCP_BACKUP_AGE_IDENTITY; a native trailer's signature is checked with
    this installation's keys."""

    def identities() -> Sequence[Identity]:
        return keys.load_identities(identity)

    with open_reader(raw, tables=dataset.tables(), strict=strict, identities=identities, limits=read_limits(),
                     verify_trailer=signing.verify_trailer) as reader:
        yield reader
