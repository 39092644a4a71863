"""What every reader yields, whatever the file's format: the common language of validate and restore."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..exceptions import Problem


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
    rows: list[list[Any]]
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
    mode: Any = None
    size: Any = None
    withheld: str | None = None  # why the backup holds no content for it (secrets kept out of a clear backup)


@dataclass
class EnvironmentRecord:
    variables: dict[str, str | None]
    redacted: list[str] = field(default_factory=list)
    feature_flags: dict[str, Any] = field(default_factory=dict)


@dataclass
class End:
    counts: dict[str, int]


class BackupReader(Protocol):
    """Reads one backup file. ``header`` is known on opening; ``events()`` streams the rest once."""

    format: str  # "adcp-backup v3", "legacy v2.0", "legacy v1.0 full_backup", "legacy v1.0 csv_backup"
    compression: str
    encrypted: bool
    header: dict[str, Any]
    problems: list[Problem]

    def events(self) -> Any: ...
