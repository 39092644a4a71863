"""The exception tree of adcp_backup: one root, leaves that also inherit the matching builtin."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured


class BackupError(Exception):
    """Root of every error adcp_backup raises on purpose."""


class BackupConfigurationError(BackupError, ImproperlyConfigured):
    """A setting or an optional dependency is missing or wrong."""


class EncryptionKeyError(BackupConfigurationError):
    """An encrypted backup cannot be opened: no age identity is configured, or none fits the file."""


class BackupNotFound(BackupError, FileNotFoundError):
    """No backup has that name or path."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a backup, located by section (a table or part of the file) and row."""

    section: str
    message: str
    row: int | None = None

    def as_dict(self) -> dict:
        return {"section": self.section, "row": self.row, "message": self.message}

    def __str__(self) -> str:
        where = self.section if self.row is None else f"{self.section} row {self.row}"
        return f"{where}: {self.message}"


class ProblemLog:
    """Problems kept up to a limit, and a count of every one: a file of a billion bad lines costs no memory."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, int(limit))
        self.items: list[Problem] = []
        self.total = 0

    def add(self, problem: Problem, count: int = 1) -> None:
        """Record ``problem``; ``count`` > 1 stands for a run of identical ones, kept once and counted each."""
        self.total += count
        if len(self.items) < self.limit:
            self.items.append(problem)

    def extend(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            self.add(problem)

    def absorb(self, other: ProblemLog) -> None:
        """Take another log's problems after this one's, and its count of those it did not keep."""
        for problem in other.items:
            self.add(problem)
        self.total += other.total - len(other.items)

    @property
    def full(self) -> bool:
        return len(self.items) >= self.limit

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Problem:
        return self.items[index]

    def __bool__(self) -> bool:
        return self.total > 0


class InvalidBackup(BackupError):
    """The file is not a readable, complete and consistent backup."""

    def __init__(self, problems: list[Problem] | Problem | str, *, total: int | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem("file", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        self.total = total if total is not None else len(self.problems)
        first = str(self.problems[0]) if self.problems else "unknown problem"
        more = f" (and {self.total - 1} more)" if self.total > 1 else ""
        super().__init__(f"Invalid backup: {first}{more}")


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

    def as_dict(self) -> dict:
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
