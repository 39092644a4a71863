"""The exception tree of adcp_backup: one root, leaves that also inherit the matching builtin."""
from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

# The format layer's errors are the root of the tree: re-exported here, so every caller imports from one place.
from .format.errors import (
    BackupError,
    ConfigurationError,
    EncryptionKeyError,
    InvalidBackup,
    Problem,
    ProblemLog,
)

__all__ = [
    "BackupConfigurationError", "BackupError", "BackupLocked", "BackupNotFound", "ConfigurationError", "Conflict",
    "EncryptionKeyError", "InvalidBackup", "OtherDatabase", "Problem", "ProblemLog", "RestoreError",
    "SchemaMismatch", "SettingsFilesNotWritten", "TenantConflict", "UnknownTenant", "UnsignedBackup",
    "ValuesRefused",
]


class BackupConfigurationError(ConfigurationError, ImproperlyConfigured):
    """A setting or an optional dependency is missing or wrong."""


class BackupNotFound(BackupError, FileNotFoundError):
    """No backup has that name or path."""


class RestoreError(BackupError):
    """A restore could not be carried out; the database was left as it was."""


class SettingsFilesNotWritten(BackupError):
    """The database WAS restored and committed, but some settings files could not be written afterwards."""

    def __init__(self, *, name: str, failed: dict[str, str], files: list[dict[str, str]],
                 restored: dict[str, int]) -> None:
        self.name = name
        self.failed = dict(failed)  # path -> why it was not written
        self.files = list(files)  # the report of every settings file, written or not
        self.restored = dict(restored)
        shown = "; ".join(f"{path} ({reason})" for path, reason in self.failed.items())
        super().__init__(
            f"The database WAS restored from {name} and committed, but these settings files were not written "
            f"and still hold their previous content: {shown}. Fix the cause and restore them, for example by "
            "running the same restore again."
        )


class ValuesRefused(RestoreError):
    """The target database cannot store some values of the backup (see db/limits.py); nothing was changed."""

    def __init__(self, message: str, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(message)


class SchemaMismatch(RestoreError):
    """The database's tables do not match the backup's; nothing was written."""

    def __init__(self, differences: list[str]) -> None:
        self.differences = differences
        super().__init__("The database schema does not match the backup: " + "; ".join(differences))


class OtherDatabase(RestoreError):
    """The backup was taken from another database than the one it would restore into, and that was not allowed."""


class BackupLocked(BackupError):
    """Another backup or restore is running."""


class UnknownTenant(BackupError, LookupError):
    """A tenant slug names no tenant where it was looked for (the database or the backup)."""


@dataclass(frozen=True)
class Conflict:
    """One row a tenant restore cannot write without touching data outside its scope."""

    table: str
    id: int
    message: str

    def as_dict(self) -> dict[str, str | int]:
        return {"table": self.table, "id": self.id, "message": self.message}

    def __str__(self) -> str:
        return f"{self.table} id {self.id}: {self.message}"


class TenantConflict(RestoreError):
    """A tenant restore would collide with rows of other tenants; nothing was written."""

    def __init__(self, conflicts: list[Conflict]) -> None:
        self.conflicts = list(conflicts)
        shown = "; ".join(str(c) for c in self.conflicts[:10])
        more = f" (and {len(self.conflicts) - 10} more)" if len(self.conflicts) > 10 else ""
        super().__init__(f"The tenant restore was refused, nothing was changed: {shown}{more}")


class UnsignedBackup(RestoreError):
    """A restore of a file this installation did not sign, without the explicit permission to restore it."""
