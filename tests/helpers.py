"""Helpers of the tests: the engines under test, the AdCP schema made and dropped on any of them, every row of it read
back as stored, and a management command's exit code and output."""
from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connections

from adcp_backup import dataset, demo
from adcp_backup.db import get_engine
from adcp_backup.db.base import shipped_ddl

Seeded = Callable[..., dict[str, int]]  # the seeded fixture: call with an alias (and a size)
SMALL = demo.DemoSize(tenants=4, products=60, agents=2, embeddings=12, dim=16)


def engine_aliases() -> list[str]:
    """SQLite always; PostgreSQL and MariaDB when their URLs are set. In CI a missing URL is a failure."""
    aliases = ["default"]
    for alias, variable in (("postgresql", "ADCP_TEST_POSTGRES_URL"), ("mysql", "ADCP_TEST_MYSQL_URL")):
        if alias in django_settings.DATABASES:
            aliases.append(alias)
        elif os.environ.get("CI"):
            raise RuntimeError(f"CI must set {variable}: the {alias} tests may not be skipped there.")
    return aliases


def engine_params(only: tuple[str, ...] = ("default", "postgresql", "mysql")) -> list[Any]:
    """Parameters naming each engine by its label (sqlite, postgresql, mariadb); one whose URL is not set is
    skipped with the reason (engine_aliases fails in CI without them)."""
    configured = engine_aliases()
    params = []
    for alias, label, variable in (("default", "sqlite", ""), ("postgresql", "postgresql", "ADCP_TEST_POSTGRES_URL"),
                                   ("mysql", "mariadb", "ADCP_TEST_MYSQL_URL")):
        if alias not in only:
            continue
        marks = [] if alias in configured else [pytest.mark.skip(reason=f"{variable} is not set")]
        params.append(pytest.param(alias, id=label, marks=marks))
    return params


def run_command(*args: str) -> tuple[int, str, str]:
    """A management command's exit code, stdout and stderr; when it fails, the error message instead of stderr."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), err.getvalue()


def drop_schema(alias: str) -> None:
    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"DROP TABLE IF EXISTS {dataset.FTS_TABLE}")
        if connection.vendor == "mysql":
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
        for spec in reversed(dataset.tables()):
            cursor.execute(f"DROP TABLE IF EXISTS {connection.ops.quote_name(spec.name)}")
        if connection.vendor == "mysql":
            cursor.execute("SET FOREIGN_KEY_CHECKS = 1")


def create_schema(alias: str) -> None:
    drop_schema(alias)
    engine = get_engine(alias)
    engine.create_schema(shipped_ddl(engine.vendor))


def table_state(alias: str = "default") -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every AdCP table as stored, ordered by id; on SQLite each value with its typeof()."""
    engine = get_engine(alias)
    existing = engine.existing_tables()
    state: dict[str, list[tuple[Any, ...]]] = {}
    for spec in dataset.tables():
        if spec.name not in existing:
            continue
        columns = [c.name for c in engine.describe(spec.name)]
        rows: list[tuple[Any, ...]] = []
        for batch in engine.read_rows(spec, columns, batch_size=1000):
            rows.extend(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in batch)
        if engine.vendor == "sqlite":
            types = ", ".join(f'typeof("{c}")' for c in columns)
            with engine.connection.cursor() as cursor:
                cursor.execute(f'SELECT {types} FROM "{spec.name}" ORDER BY id')
                typed = cursor.fetchall()
            rows = [tuple(zip(row, kinds)) for row, kinds in zip(rows, typed)]
        state[spec.name] = rows
    return state


def fts_match(term: str, alias: str = "default") -> list[int]:
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT rowid FROM {dataset.FTS_TABLE} WHERE {dataset.FTS_TABLE} MATCH %s ORDER BY rowid",
                       [term])
        return [r[0] for r in cursor.fetchall()]


def schema_sql(alias: str = "default") -> list[tuple[str, str, str]]:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name")
        return [tuple(r) for r in cursor.fetchall() if not r[1].startswith(("auth_", "django_", "adcp_backup_"))]
