"""What the services return: frozen dataclasses that front ends render, each with an ``as_dict()`` for JSON."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, cast

from . import origin, retention, signing
from .exceptions import Problem
from .naming import parse_time

POLICY_FROM_FLAGS = "flags"
POLICY_FROM_SETTINGS = "settings"


class AsDict:
    """A result whose ``as_dict()`` (what ``--json`` prints) is all of its fields."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(cast(Any, self))


@dataclass(frozen=True)
class TableChange:
    before: int
    after: int
    added: int | None = None
    removed: int | None = None
    changed: int | None = None


@dataclass(frozen=True)
class BackupResult(AsDict):
    name: str
    path: str | None
    size: int
    sha256: str
    counts: dict[str, int]
    compression: str
    encrypted: bool
    created_at: str
    scope: dict[str, Any]
    purpose: str
    secrets: str
    duration: float
    provenance: str = signing.SIGNED
    withheld_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RestoreResult(AsDict):
    name: str
    format: str
    restored: dict[str, int]
    dry_run: bool
    safety_backup: str | None
    changes: dict[str, TableChange]
    defaulted: dict[str, list[str]]
    files: list[dict[str, str]]
    environment: dict[str, Any]
    schema_created: bool
    notes: list[str]
    duration: float
    origin: dict[str, Any] | None = None


@dataclass(frozen=True)
class ValidationReport:
    name: str
    path: str | None
    valid: bool
    format: str | None
    compression: str | None
    encrypted: bool
    created_at: str | None
    counts: dict[str, int]
    checksums: dict[str, str | None]
    problems: list[Problem]
    problems_total: int
    duration: float
    provenance: str = signing.UNSIGNED
    provenance_note: str = ""
    future_dated: bool = False
    withheld_files: list[str] = field(default_factory=list)
    target_engine: str | None = None  # whose limits the values were checked against, besides the file's own

    @property
    def trusted(self) -> bool:
        return self.valid and self.provenance in signing.TRUSTED

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = [p.as_dict() for p in self.problems]
        data["trusted"] = self.trusted
        return data


@dataclass(frozen=True)
class BackupEntry:
    name: str
    created_at: str | None
    size: int
    format: str | None
    compression: str | None
    encrypted: bool
    counts: dict[str, int] | None
    scope: dict[str, Any] | None
    purpose: str | None
    path: str | None
    error: str | None = None
    source: dict[str, Any] | None = None
    provenance: str = signing.UNSIGNED
    provenance_note: str = ""
    uploaded: bool = False
    future_dated: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "origin": origin.origin_info(self.source), "trusted": self.trusted}

    @property
    def created(self) -> datetime | None:
        return parse_time(self.created_at)

    @property
    def origin_known(self) -> bool:
        return origin.from_source(self.source)[0] != origin.UNKNOWN

    def belongs_to(self, database: origin.DatabaseIdentity) -> bool:
        """Whether this backup is one of ``database``'s (see adcp_backup.origin for files without an identity)."""
        return origin.belongs_to(self.source, database)

    def provenance_label(self) -> str:
        return signing.LABELS.get(self.provenance, self.provenance)

    @property
    def trusted(self) -> bool:
        """Whether this backup may steer anything automatic (``latest``, monitoring, retention): a readable
        file whose header this installation signed, for this very name, dated no later than a few minutes
        from now. Anything else is listed, validated and restored only on explicit request, never pruned."""
        return self.error is None and self.provenance in signing.TRUSTED and not self.future_dated


@dataclass(frozen=True)
class RestorePlan:
    name: str
    format: str
    created_at: str | None
    file_counts: dict[str, int | None]
    current_counts: dict[str, int | None]
    settings_files: list[str]
    scope: dict[str, Any]
    origin: dict[str, Any] | None = None
    other_database: bool = False
    provenance: str = signing.UNSIGNED
    provenance_note: str = ""

    @property
    def provenance_label(self) -> str:
        return signing.LABELS.get(self.provenance, self.provenance)


@dataclass(frozen=True)
class InfoResult(AsDict):
    database: dict[str, Any]
    storage: dict[str, Any]
    backups: dict[str, Any]
    newest: dict[str, Any] | None
    settings: dict[str, Any]
    max_age: float | None = None
    stale: bool = False
    drill: dict[str, Any] | None = None  # the last drill and the last successful one (drill.info)


@dataclass(frozen=True)
class PruneResult(AsDict):
    dry_run: bool
    policy: dict[str, int]
    kept: list[retention.PrunedFile]
    removed: list[retention.PrunedFile]
    skipped: list[retention.PrunedFile]
    freed_bytes: int
    notes: list[str]
    partials_removed: list[str] = field(default_factory=list)
    policy_source: str = POLICY_FROM_SETTINGS  # "flags": only the rules given apply; "settings": ADCP_BACKUP_KEEP_*


@dataclass(frozen=True)
class DeleteResult(AsDict):
    name: str
    size: int
