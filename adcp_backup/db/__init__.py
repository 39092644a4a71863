"""Database engines behind one interface: snapshot reads, bulk writes, schema capture, FTS and sequences."""
from __future__ import annotations

from django.db import connections

from ..exceptions import BackupConfigurationError
from .base import Engine


def get_engine(alias: str = "default") -> Engine:
    """The engine for a database alias of the project."""
    if alias not in connections.settings:
        raise BackupConfigurationError(f"There is no database {alias!r} in DATABASES.")
    connection = connections[alias]
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
