"""Which database a backup came from: a stable identity without secrets, and whether a backup belongs to one.

A backup's header records its source database as ``source.alias`` and ``source.database`` (engine, name, host,
port: never a user or a password). A backup belongs to a database when these identities are equal, whatever the
alias is called in the project that reads it. Older native files record only the alias: they belong to the
database of that alias. Legacy files, and encrypted files that no key at hand opens, have no origin that can be
read: they count for the default database (the first of ADCP_BACKUP_DATABASES) only, marked "origin unknown".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connections
from django.utils.connection import ConnectionDoesNotExist

from .conf import backup_settings
from .exceptions import BackupConfigurationError, OtherDatabase

KNOWN = "known"
ALIAS_ONLY = "alias only"
UNKNOWN = "unknown"
_LIMIT = 500  # characters of any identity field read from a file


@dataclass(frozen=True)
class DatabaseIdentity:
    """A database as configured, comparable across processes and projects: its alias is only a label."""

    alias: str
    engine: str
    name: str
    host: str | None = None
    port: str | None = None

    @property
    def key(self) -> tuple[str, str, str | None, str | None]:
        return (self.engine, self.name, self.host, self.port)

    def as_header(self) -> dict[str, Any]:
        return {"engine": self.engine, "name": self.name, "host": self.host, "port": self.port}

    def describe(self) -> str:
        where = f" on {self.host}{':' + self.port if self.port else ''}" if self.host else ""
        return f"{self.engine} database {self.name}{where} (alias {self.alias!r})"


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)[:_LIMIT]


def of_alias(alias: str) -> DatabaseIdentity:
    """The identity of the database configured as ``alias`` in this project's DATABASES."""
    try:
        connection = connections[alias]
    except ConnectionDoesNotExist as exc:
        raise BackupConfigurationError(f"There is no database {alias!r} in DATABASES.") from exc
    config = connection.settings_dict
    name = str(config.get("NAME") or "")
    if connection.vendor == "sqlite" and name and name != ":memory:" and not name.startswith("file:"):
        name = str(Path(name).expanduser().resolve())
    host = _text(config.get("HOST"))
    return DatabaseIdentity(alias=alias, engine=connection.vendor, name=name,
                            host=host.lower() if host else None, port=_text(config.get("PORT")))


def source_header(alias: str) -> dict[str, Any]:
    """What a new backup's ``source`` records about its database, besides the versions."""
    identity = of_alias(alias)
    return {"engine": identity.engine, "alias": alias, "database": identity.as_header()}


def from_source(source: Any) -> tuple[str, DatabaseIdentity | None, str | None]:
    """How much a header's ``source`` tells of the database: (KNOWN | ALIAS_ONLY | UNKNOWN, identity, alias)."""
    if not isinstance(source, dict):
        return UNKNOWN, None, None
    alias = _text(source.get("alias")) if isinstance(source.get("alias"), str) else None
    database = source.get("database")
    if isinstance(database, dict) and isinstance(database.get("engine"), str) and database.get("name") is not None:
        return KNOWN, DatabaseIdentity(alias=alias or "?", engine=str(database["engine"])[:_LIMIT],
                                       name=str(database["name"])[:_LIMIT], host=_text(database.get("host")),
                                       port=_text(database.get("port"))), alias
    if alias:
        return ALIAS_ONLY, None, alias
    return UNKNOWN, None, None


def belongs_to(source: Any, target: DatabaseIdentity) -> bool:
    """Whether a backup with this header ``source`` counts as one of ``target``'s backups."""
    kind, identity, alias = from_source(source)
    if kind == KNOWN:
        return identity is not None and identity.key == target.key
    if kind == ALIAS_ONLY:
        return alias == target.alias
    return target.alias == backup_settings.default_database


def describe_source(source: Any) -> str:
    """One line for people: where a backup came from, or that nobody can tell."""
    kind, identity, alias = from_source(source)
    if kind == KNOWN and identity is not None:
        return identity.describe()
    if kind == ALIAS_ONLY:
        return f"database alias {alias!r} (identity not recorded)"
    return "origin unknown"


def origin_info(source: Any) -> dict[str, Any]:
    """The origin as data, for --json and the admin: kind, alias, identity and a description."""
    kind, identity, alias = from_source(source)
    return {"kind": kind, "alias": alias, "database": identity.as_header() if identity else None,
            "description": describe_source(source)}


def restore_origin(header: dict[str, Any], database: str, *, from_other_database: bool) -> dict[str, Any]:
    """The origin of a backup about to be restored into ``database``, for the plan and the result (origin_info with
    ``other_database``); refuses a backup of another database unless ``from_other_database``."""
    source = header.get("source")
    info = origin_info(source)
    target = of_alias(database)
    # Only a known origin can be another database: a file that does not say where it came from (legacy) is
    # shown as "origin unknown" and restores anywhere.
    info["other_database"] = info["kind"] != UNKNOWN and not belongs_to(source, target)
    if info["other_database"] and not from_other_database:
        raise OtherDatabase(
            f"This backup was taken from {info['description']}, not from {target.describe()}. "
            "To restore it into this database anyway, pass --from-other-database."
        )
    return info
