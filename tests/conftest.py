"""Fixtures: the legacy schema created from the application's own DDL, isolated storage, table snapshots."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connections

from adcp_backup import dataset, demo
from adcp_backup.db import get_engine
from adcp_backup.db.base import shipped_ddl

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


@pytest.fixture
def operations_log() -> Callable[[], str]:
    """The text the operations log received during this test only: the file is shared by the whole test run."""
    path = Path(django_settings.LOG_FILE)
    start = path.stat().st_size if path.exists() else 0

    def written() -> str:  # the handler flushes every record it writes
        if not path.exists():
            return ""
        with path.open("rb") as f:
            f.seek(start)
            return f.read().decode("utf-8")

    return written


@pytest.fixture
def backup_env(tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory of its own, with its backup folder and settings files."""
    monkeypatch.chdir(tmp_path)
    settings.ADCP_BACKUP_DIR = str(tmp_path / "backups")
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(tmp_path / "data" / "app_settings.json"),
                                          str(tmp_path / "data" / "tenant_settings.json")]
    settings.ADCP_BACKUP_ENV_VARS = ["GEMINI_API_KEY", "EMBEDDINGS_PROVIDER", "SERVICE_BASE_URL", "DEBUG"]
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-secret-value")
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "gemini")
    monkeypatch.setenv("SERVICE_BASE_URL", "https://admin:hunter2@adcp.example.com/api")
    demo.write_settings_files(overwrite=True)
    return tmp_path


@pytest.fixture
def adcp_schema(transactional_db: None) -> Iterator[Callable[[str], None]]:
    """Call with an alias to give that database the AdCP schema; it is dropped after the test."""
    made: list[str] = []

    def make(alias: str = "default") -> None:
        create_schema(alias)
        made.append(alias)

    yield make
    for alias in made:
        drop_schema(alias)


@pytest.fixture
def seeded(adcp_schema: Callable[[str], None], backup_env: Path) -> Callable[..., dict[str, int]]:
    """Call with an alias (and a size) for a database holding the demo data."""

    def make(alias: str = "default", size: demo.DemoSize = SMALL) -> dict[str, int]:
        adcp_schema(alias)
        return demo.seed(database=alias, size=size)

    return make


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
