"""Database engines behind one interface: snapshot reads, bulk writes, schema capture, FTS and sequences."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from ..exceptions import BackupConfigurationError
from .base import Engine


def get_engine(alias: str = "default") -> Engine:
    """The engine for a database alias of the project."""
    if alias not in connections.settings:
        raise BackupConfigurationError(f"There is no database {alias!r} in DATABASES.")
    return engine_for(connections[alias])


def engine_for(connection: BaseDatabaseWrapper) -> Engine:
    """The engine that speaks to ``connection`` (one of ``connections`` or a session of its own)."""
    vendor = connection.vendor
    if vendor == "sqlite":
        from .sqlite import SQLiteEngine

        return SQLiteEngine(connection)
    if vendor == "postgresql":
        from .postgresql import PostgreSQLEngine

        return PostgreSQLEngine(connection)
    if vendor == "mysql":
        from .mysql import MySQLEngine

        return MySQLEngine(connection)
    raise BackupConfigurationError(f"adcp-backup does not support the {vendor} database engine.")


@contextmanager
def without_waiting(alias: str, *, milliseconds: int = 200) -> Iterator[None]:
    """Writes inside give up after ``milliseconds`` instead of waiting for another writer to finish.

    Only SQLite makes a writer wait for the database-wide write lock (up to its 5 s timeout by default); the
    job history uses this so that recording a job never holds up the job while a restore is writing."""
    connection = connections[alias]
    if connection.vendor != "sqlite":
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    previous = raw.execute("PRAGMA busy_timeout").fetchone()[0]
    raw.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(previous)}")
