"""What the format layer raises and reports: the root of the app's exception tree, and a backup's problems.

No Django here: ``adcp_backup.exceptions`` builds the rest of the tree on these classes and re-exports them, so
``except BackupError`` catches a format error wherever it is raised."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


class BackupError(Exception):
    """Root of every error adcp_backup raises on purpose."""


class ConfigurationError(BackupError):
    """Something the caller configured or installed is missing or wrong (an optional package, a codec name)."""


class EncryptionKeyError(ConfigurationError):
    """An encrypted backup cannot be opened: no age identity is available, or none fits the file."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a backup, located by section (a table or part of the file) and row."""

    section: str
    message: str
    row: int | None = None

    def as_dict(self) -> dict[str, str | int | None]:
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
