"""What every reader yields, whatever the file's format: the common language of validate and restore."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from .errors import ProblemLog

# One row as a reader yields it: the values of the table's columns, in the order of TableStart.columns, each
# already turned back into what the database holds (int, float, str, bytes or None).
Row: TypeAlias = list[Any]


@dataclass
class TableStart:
    name: str
    columns: list[str]
    families: list[str]
    # Columns of the table the file does not carry; a restore fills them with the application's defaults.
    defaulted: list[str] = field(default_factory=list)
    sequence: int | None = None


@dataclass
class RowBatch:
    table: str
    rows: list[Row]
    first_row: int  # 1-based number of the first row of the batch within its table
    numbers: list[int] | None = None  # each row's number, when they do not follow on (rows picked for a scope)


@dataclass
class TableEnd:
    name: str
    rows: int
    sha256: str | None = None
    sequence: int | None = None


@dataclass
class FileRecord:
    """A settings file as the backup records it. ``path``, ``mode`` and ``size`` are the file's values, unchecked:
    settings_files.RecordChecker decides whether they are sound before anything uses them."""

    path: str
    content: bytes | None  # None: the file did not exist when the backup was taken
    sha256: str | None = None
    mode: object = None
    size: object = None
    withheld: str | None = None  # why the backup holds no content for it (secrets kept out of a clear backup)


@dataclass
class EnvironmentRecord:
    variables: dict[str, str | None]
    redacted: list[str] = field(default_factory=list)
    feature_flags: dict[str, object] = field(default_factory=dict)


@dataclass
class End:
    counts: dict[str, int]


# Everything a reader yields, in file order: for each table a TableStart, RowBatches and a TableEnd; then the
# settings files and the environment; End last, once every check of the file passed (or was recorded).
Event: TypeAlias = TableStart | RowBatch | TableEnd | FileRecord | EnvironmentRecord | End


class BackupReader(Protocol):
    """Reads one backup file, whatever its format. ``header`` is known on opening; ``events()`` streams the rest
    once. A strict reader raises InvalidBackup at the first problem; a lenient one records them in ``problems``.

    Readers: format.reader.NativeReader, format.legacy.LegacyReader; format.detect.open_reader picks one."""

    @property
    def format(self) -> str:
        """"adcp-backup v3", "legacy v2.0", "legacy v1.0 full_backup" or "legacy v1.0 csv_backup"."""
        ...

    @property
    def compression(self) -> str: ...  # "none", "gzip" or "zstd"

    @property
    def encrypted(self) -> bool: ...

    @property
    def header(self) -> dict[str, Any]: ...  # parsed JSON: a native header, or the one made for a legacy file

    @property
    def problems(self) -> ProblemLog: ...

    def events(self) -> Iterator[Event]: ...
