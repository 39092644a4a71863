"""Fixtures of the restore-drill tests: a scratch folder of the test's own, and what drills leave behind."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from adcp_backup import drill


def scratch_leftovers(alias: str, made_by: int | None = None) -> list[str]:
    """Every scratch file of any drill, and every scratch database or schema made by the process ``made_by``
    (by default this one): the database servers are shared with other test runs, whose drills come and go."""
    vendor = connections[alias].vendor
    if vendor == "sqlite":
        return sorted(p.name for p in drill.scratch_folder().glob(f"{drill.FILE_PREFIX}*"))
    with connections[alias].cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'adcp\\_drill\\_%' UNION ALL "
                           "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'adcp\\_drill\\_%'")
        else:
            cursor.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
                           "WHERE SCHEMA_NAME LIKE 'adcp\\_drill\\_%'")
        maker = f"_{os.getpid() if made_by is None else made_by}_"
        return sorted(r[0] for r in cursor.fetchall() if maker in r[0])


@pytest.fixture
def drill_dir(transactional_db: None, tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The scratch SQLite folder of the test. Django's test case also refuses connections to any alias it was not
    told of before the test; a drill adds its scratch alias while it runs, as in production, so those are let
    through (connecting exactly as Django's own ensure_connection does)."""
    from django.db.backends.base.base import BaseDatabaseWrapper

    guarded = BaseDatabaseWrapper.ensure_connection

    def ensure_connection(self: Any) -> None:
        if self.alias.startswith(drill.DATABASE_PREFIX) and self.connection is None:
            with self.wrap_database_errors:
                self.connect()
            return
        guarded(self)

    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", ensure_connection)
    folder = tmp_path / "scratch"
    settings.ADCP_BACKUP_DRILL_DIR = str(folder)
    return folder


