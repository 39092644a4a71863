"""Restore drills: a backup restored into a scratch database of each engine, read back, compared, removed."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from adcp_backup import drill, services, signals
from adcp_backup.db import get_engine
from adcp_backup.exceptions import BackupConfigurationError

from . import forge
from .conftest import engine_aliases, table_state

pytestmark = [pytest.mark.engines, pytest.mark.django_db(transaction=True, databases="__all__")]


def scratch_leftovers(alias: str) -> list[str]:
    """Every scratch database, schema or file of any drill, whoever made it."""
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
        return sorted(r[0] for r in cursor.fetchall())


def sequences(alias: str) -> dict[str, int | None]:
    engine = get_engine(alias)
    return {spec: engine.get_sequence(spec) for spec in ("tenant", "product", "externalagent",
                                                          "product_embeddings")}


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


@pytest.mark.parametrize("alias", engine_aliases())
def test_a_good_backup_drills_with_counts_checksums_and_time(seeded, alias, drill_dir):
    counts = seeded(alias)
    backup = services.backup_create(database=alias)
    live = connections[alias]
    live.ensure_connection()
    raw_before = live.connection
    state_before = table_state(alias)
    sequences_before = sequences(alias)
    settings_before = dict(connections.settings[alias])

    out, err = io.StringIO(), io.StringIO()
    call_command("backup_drill", "latest", "--database", alias, "--json", stdout=out, stderr=err)
    result = orjson.loads(out.getvalue())

    assert result["restorable"] is True and result["problems"] == []
    assert result["name"] == backup.name and result["engine"] == live.vendor
    assert {t: c["rows_restored"] for t, c in result["tables"].items()} == {t: n for t, n in counts.items()
                                                                           if t in result["tables"]}
    for table, check in result["tables"].items():
        assert check["rows_in_file"] == check["rows_restored"] == backup.counts[table]
        assert check["compared"] == "exact"
        assert check["checksum_restored"] == check["checksum_in_file"]  # the backup's own checksum, recomputed
        assert check["matches"] is True
    assert result["checks"]["counts"] and result["checks"]["checksums"] and result["checks"]["foreign_keys"]
    if live.vendor == "sqlite":
        assert result["checks"]["fts"] is True
    assert result["restore_seconds"] > 0 and result["duration"] >= result["restore_seconds"]
    assert result["peak_memory_bytes"] > 0

    # The live database: same rows, same sequences, the same connection, and no scratch database left.
    assert table_state(alias) == state_before
    assert sequences(alias) == sequences_before
    assert live.connection is raw_before and not live.in_atomic_block
    assert dict(connections.settings[alias]) == settings_before
    assert not [a for a in connections.settings if a.startswith(drill.DATABASE_PREFIX)]
    assert scratch_leftovers(alias) == []
    assert drill.read_state()["last_success"]["name"] == backup.name


def test_a_drill_reports_a_row_that_does_not_restore_by_table_and_row(seeded, backup_env, drill_dir):
    seeded("default")
    good = services.backup_create(database="default", compression="none")
    source = Path(good.path)

    def nan_price(lines: list[Any]) -> list[Any]:
        table = None
        row_number = 0
        for line in lines:
            if isinstance(line, dict) and line.get("kind") == "table":
                table, row_number = line["name"], 0
                price = [c["name"] for c in line["columns"]].index("price_cpm") if table == "product" else None
            elif isinstance(line, list) and table == "product":
                row_number += 1
                if row_number == 7:
                    line[price] = {"$float": "nan"}
        return lines

    bad = forge.forge(source, backup_env / "nan.jsonl", nan_price)
    assert services.backup_validate(file=str(bad)).valid  # a valid file...
    state_before = table_state("default")
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("backup_drill", str(bad), "--json", stdout=out, stderr=io.StringIO())
    assert raised.value.returncode == 2
    result = orjson.loads(out.getvalue())
    assert result["restorable"] is False
    assert result["problems"][0]["section"] == "product" and result["problems"][0]["row"] == 7
    assert table_state("default") == state_before
    assert scratch_leftovers("default") == []
    assert drill.read_state()["last"]["restorable"] is False
