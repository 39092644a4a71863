"""Every engine as a backup source and a restore target: round trips, the cross-engine matrix, snapshots,
failed and killed restores, and sequences, against real SQLite, PostgreSQL and MariaDB databases."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, close_old_connections, connections, transaction

from adcp_backup import dataset, demo, results, services
from adcp_backup.db import get_engine
from adcp_backup.db.base import fingerprint
from adcp_backup.exceptions import InvalidBackup, RestoreError
from adcp_backup.progress import ProgressEvent

from .helpers import drop_schema, engine_aliases, fts_match, table_state
from .processes import kill_at_marker, kill_when, manage
from .test_services import _rechecksum, read_lines

ALIASES = engine_aliases()
SERVERS = [a for a in ALIASES if a != "default"]
PROJECT = Path(__file__).resolve().parent.parent
all_databases = pytest.mark.django_db(transaction=True, databases="__all__")
pytestmark = [pytest.mark.engines, all_databases]


def execute(alias: str, sql: str, params: list[Any] | None = None) -> Any:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall() if cursor.description else cursor.rowcount


def canonical(value: Any) -> Any:
    """One engine-neutral form per value: what a faithful cross-engine restore must keep equal.

    Booleans are 0/1 on SQLite and MariaDB and true/false on PostgreSQL; datetimes are text on SQLite and
    datetime objects elsewhere. Both compare as the instant they name (datetime.fromisoformat reads SQLite's
    text and the ISO text alike), so "…26.000000" and "…26" are the same moment. Everything else (text,
    floats bit for bit, blobs byte for byte, NULLs) must be identical as it is.
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def canonical_state(alias: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = get_engine(alias)
    state: dict[str, list[tuple[Any, ...]]] = {}
    for spec in dataset.tables():
        columns = spec.column_names
        families = [c.family for c in spec.columns]
        rows: list[tuple[Any, ...]] = []
        for batch in engine.read_rows(spec, columns, batch_size=500):
            for row in batch:
                values = []
                for value, family in zip(row, families):
                    value = canonical(value)
                    if family == dataset.DATETIME and isinstance(value, str):
                        value = datetime.fromisoformat(value)
                    values.append(value)
                rows.append(tuple(values))
        state[spec.name] = rows
    return state


def put_hard_values(alias: str) -> None:
    """Values that break careless conversions: float bits, NUL bytes, quotes and high bytes in blobs, empty and
    non-BMP text."""
    execute(alias, "UPDATE product SET price_cpm = %s WHERE id = 1", [0.1 + 0.2])
    execute(alias, "UPDATE product SET price_cpm = %s WHERE id = 2", [1e-300])
    execute(alias, "UPDATE product SET price_cpm = %s WHERE id = 3", [-123456789.98765432])
    execute(alias, "UPDATE product SET description = %s WHERE id = 4", ["tab\t, newline\n, \\N, 𝄞 \"q\" 'q'"])
    execute(alias, "UPDATE product SET description = %s WHERE id = 5", [""])
    # dim 16 float32s: 64 bytes, the sizes validation accepts
    execute(alias, "UPDATE product_embeddings SET embedding = %s WHERE id = 1", [bytes(range(192, 256))])
    execute(alias, "UPDATE product_embeddings SET embedding = %s WHERE id = 2", [b"\x00\n\r\\'\"" * 10 + bytes(4)])


@pytest.mark.parametrize("alias", ALIASES)
def test_round_trip_on_each_engine_restores_every_value(seeded, alias):
    seeded(alias)
    put_hard_values(alias)
    before = table_state(alias)
    result = services.backup_create(database=alias, compression="gzip")
    assert result.counts == {"tenant": 4, "product": 60, "externalagent": 2, "product_embeddings": 12}

    execute(alias, "UPDATE product SET name = 'changed', price_cpm = 1 WHERE id <= 10")
    execute(alias, "UPDATE tenant SET enable_web_context = %s", [True])
    execute(alias, "DELETE FROM product_embeddings WHERE id > 6")
    assert table_state(alias) != before

    changed = table_state(alias)
    restored = services.backup_restore(file=result.name, database=alias)
    assert restored.restored == result.counts
    assert table_state(alias) == before

    # The safety backup taken first holds the rows the restore replaced.
    assert restored.safety_backup and services.backup_validate(file=restored.safety_backup).valid
    services.backup_restore(file=restored.safety_backup, database=alias, safety_backup=False)
    assert table_state(alias) == changed


@pytest.mark.parametrize("alias", SERVERS)
def test_every_engine_describes_the_adcp_tables_alike(seeded, alias):
    seeded("default")
    seeded(alias)
    names = dataset.table_names()
    sqlite_columns = get_engine("default").describe_all(names)
    assert get_engine(alias).describe_all(names) == sqlite_columns
    assert fingerprint(get_engine(alias).describe_all(names)) == fingerprint(sqlite_columns)
    families = {c["name"]: c["family"] for c in sqlite_columns["tenant"]}
    assert families["enable_web_context"] == "boolean" and families["created_at"] == "datetime"
    assert {c["name"]: c["family"] for c in sqlite_columns["product_embeddings"]}["embedding"] == "blob"


@pytest.mark.parametrize("target", ALIASES)
@pytest.mark.parametrize("source", ALIASES)
def test_cross_engine_restore_into_an_empty_database(seeded, adcp_schema, source, target):
    seeded(source)
    put_hard_values(source)
    expected = canonical_state(source)
    result = services.backup_create(database=source, compression="zstd")
    if target == source:
        drop_schema(target)
    else:
        adcp_schema(target)  # registered for clean-up, then emptied: the target starts with no AdCP tables
        drop_schema(target)
    assert not set(dataset.table_names()) & get_engine(target).existing_tables()

    restored = services.backup_restore(file=result.name, database=target, create_schema=True,
                                       from_other_database=True)
    assert restored.schema_created
    assert restored.restored == result.counts
    assert canonical_state(target) == expected
    fts_note = any("products_fts" in note for note in restored.notes)
    assert fts_note == (source == "default" and target != "default")
    if target == "default":  # the SQLite schema comes with its full-text index, filled from the rows
        assert fts_match("homepage")
        execute("default", "INSERT INTO products_fts(products_fts) VALUES('integrity-check')")


@pytest.mark.skipif(len(ALIASES) < 3, reason="needs ADCP_TEST_POSTGRES_URL and ADCP_TEST_MYSQL_URL")
def test_chain_sqlite_postgresql_mariadb_sqlite_ends_where_it_started(seeded, adcp_schema, backup_env):
    seeded("default")
    put_hard_values("default")
    start = table_state("default")  # SQLite values with their storage classes
    alias_path = ["default", "postgresql", "mysql", "default"]
    for source, target in zip(alias_path, alias_path[1:]):
        result = services.backup_create(database=source, compression="none")
        if target == "default":
            drop_schema("default")
        else:
            adcp_schema(target)
            drop_schema(target)
        services.backup_restore(file=result.name, database=target, create_schema=True, safety_backup=False,
                                from_other_database=True)
    # Exactly the same stored values and storage classes: datetimes come back as SQLite's own text
    # ("2025-08-30 07:28:26.672543"), booleans as integers 0/1, floats and blobs bit for bit.
    assert table_state("default") == start


def _keep_writing(alias: str, first_id: int, window: int, stop: threading.Event, commits: list[int]) -> None:
    """Slide a window of product ids: each transaction adds id k, drops id k - window, and stamps tenant 4."""
    k = first_id
    try:
        while not stop.is_set():
            with transaction.atomic(using=alias):
                execute(alias, "INSERT INTO product (id, tenant_id, name, price_cpm, delivery_type, created_at) "
                               "VALUES (%s, 1, %s, 1.5, 'guaranteed', '2025-09-01 00:00:00')", [k, f"new {k}"])
                execute(alias, "DELETE FROM product_embeddings WHERE product_id = %s", [k - window])
                execute(alias, "DELETE FROM product WHERE id = %s", [k - window])
                execute(alias, "UPDATE tenant SET name = %s WHERE id = 4", [f"generation {k}"])
            commits.append(k)
            k += 1
    finally:
        connections.close_all()


@pytest.mark.parametrize("alias", SERVERS)
def test_backup_is_one_consistent_moment_while_products_change(seeded, settings, alias):
    products = 3000
    seeded(alias, demo.DemoSize(tenants=4, products=products, agents=2, embeddings=300, dim=16))
    execute(alias, "UPDATE tenant SET name = %s WHERE id = 4", [f"generation {products}"])
    settings.ADCP_BACKUP_BATCH_SIZE = 25  # many round trips, so the writer commits between them
    stop, commits = threading.Event(), []
    writer = threading.Thread(target=_keep_writing, args=(alias, products + 1, products, stop, commits))
    writer.start()
    try:
        while len(commits) < 5:
            time.sleep(0.01)
        at_start = len(commits)

        def wait_for_a_commit(event: ProgressEvent) -> None:  # after every batch read, one more write
            seen, deadline = len(commits), time.monotonic() + 10
            while len(commits) == seen and time.monotonic() < deadline:
                time.sleep(0.001)

        result = services.backup_create(database=alias, compression="none", include_settings=False,
                                        progress=wait_for_a_commit)
        during = len(commits) - at_start
    finally:
        stop.set()
        writer.join()
    close_old_connections()
    assert during >= products // 25, "the writer must have committed while the backup was read"

    lines = read_lines(result.path)
    rows: dict[str, list[list[Any]]] = {}
    current = None
    for line in lines:
        if isinstance(line, dict) and line["kind"] == "table":
            current = rows.setdefault(line["name"], [])
        elif isinstance(line, list):
            current.append(line)
    product_ids = [r[0] for r in rows["product"]]
    newest = max(product_ids)
    # One moment: exactly the window [newest - products + 1, newest], with the tenant stamp of that moment.
    assert product_ids == list(range(newest - products + 1, newest + 1))
    assert [r[1] for r in rows["tenant"] if r[0] == 4] == [f"generation {newest}"]
    assert {r[1] for r in rows["product_embeddings"]} <= set(product_ids)
    assert lines[0]["counts"] == {name: len(table_rows) for name, table_rows in rows.items()}
    assert services.backup_validate(file=result.name).valid


@pytest.mark.parametrize("create_schema", [False, True], ids=["existing-tables", "create-schema"])
@pytest.mark.parametrize("alias", SERVERS)
def test_restore_with_a_unique_conflict_changes_nothing(seeded, backup_env, alias, create_schema):
    seeded(alias)
    result = services.backup_create(database=alias, compression="none")
    lines = Path(result.path).read_bytes().split(b"\n")
    table_at = next(i for i, line in enumerate(lines) if line.startswith(b'{"kind":"table","name":"tenant"'))
    lines[table_at + 2] = lines[table_at + 2].replace(b'"publisher-2"', b'"publisher-1"')
    broken = backup_env / "broken.jsonl"
    broken.write_bytes(_rechecksum(lines))
    if create_schema:
        drop_schema(alias)
    else:
        execute(alias, "UPDATE tenant SET name = 'current' WHERE id = 3")
    state = table_state(alias)
    tables = get_engine(alias).existing_tables()

    with pytest.raises(RestoreError, match="(?i)duplicate|unique"):
        services.backup_restore(file=str(broken), database=alias, safety_backup=False,
                                create_schema=create_schema)
    assert get_engine(alias).existing_tables() == tables  # MariaDB's committed DDL is undone too
    assert table_state(alias) == state


@pytest.mark.parametrize("alias", SERVERS)
def test_restore_with_an_orphan_row_changes_nothing_and_keeps_the_foreign_keys(seeded, backup_env, alias):
    seeded(alias)
    result = services.backup_create(database=alias, compression="none")
    lines = Path(result.path).read_bytes().split(b"\n")
    table_at = next(i for i, line in enumerate(lines) if line.startswith(b'{"kind":"table","name":"product"'))
    lines[table_at + 1] = lines[table_at + 1].replace(b"[1,1,", b"[1,777,", 1)
    orphan = backup_env / "orphan.jsonl"
    orphan.write_bytes(_rechecksum(lines))
    execute(alias, "UPDATE tenant SET name = 'current' WHERE id = 3")
    state = table_state(alias)
    with pytest.raises((InvalidBackup, RestoreError), match="(?i)777|foreign key"):
        services.backup_restore(file=str(orphan), database=alias, safety_backup=False, skip_validation=True)
    assert table_state(alias) == state

    services.backup_restore(file=result.name, database=alias, safety_backup=False)
    with pytest.raises(IntegrityError):  # the restore put the foreign keys back
        with transaction.atomic(using=alias):
            execute(alias, "INSERT INTO product (id, tenant_id, name, price_cpm, delivery_type, created_at) "
                           "VALUES (9999, 777, 'orphan', 1.0, 'guaranteed', '2025-01-01 00:00:00')")
    assert get_engine(alias).capture_ddl(dataset.table_names()) == result_ddl(result)


@pytest.mark.skipif("postgresql" not in ALIASES, reason="ADCP_TEST_POSTGRES_URL is not set")
def test_postgresql_names_orphans_by_join_only_when_a_foreign_key_is_refused(seeded, backup_env):
    """Adding the dropped keys back checks every row; the join that names orphans runs only when that fails."""
    seeded("postgresql")
    result = services.backup_create(database="postgresql", compression="none")
    lines = Path(result.path).read_bytes().split(b"\n")
    table_at = next(i for i, line in enumerate(lines) if line.startswith(b'{"kind":"table","name":"product"'))
    lines[table_at + 1] = lines[table_at + 1].replace(b"[1,1,", b"[1,777,", 1)
    orphan = backup_env / "orphan.jsonl"
    orphan.write_bytes(_rechecksum(lines))
    statements: list[str] = []

    def record(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        statements.append(sql)
        return execute(sql, params, many, context)

    with connections["postgresql"].execute_wrapper(record):
        services.backup_restore(file=result.name, database="postgresql", safety_backup=False)
    assert any("ADD CONSTRAINT" in sql for sql in statements)
    assert not any(" p ON p." in sql for sql in statements)  # the orphan join (base.check_foreign_keys)

    statements.clear()
    with connections["postgresql"].execute_wrapper(record), pytest.raises(InvalidBackup, match="id 1: tenant_id 777"):
        services.backup_restore(file=str(orphan), database="postgresql", safety_backup=False, skip_validation=True)
    assert any(" p ON p." in sql for sql in statements)


@pytest.mark.parametrize("alias", SERVERS)
def test_a_bad_row_found_while_rows_are_being_written_changes_nothing(seeded, backup_env, settings, alias):
    seeded(alias)
    settings.ADCP_BACKUP_BATCH_SIZE = 10  # products 1-50 are written (a COPY open on PostgreSQL) before row 51
    result = services.backup_create(database=alias, compression="none")
    lines = Path(result.path).read_bytes().split(b"\n")
    table_at = next(i for i, line in enumerate(lines) if line.startswith(b'{"kind":"table","name":"product"'))
    row = json.loads(lines[table_at + 51])
    row[2] = None  # name is NOT NULL
    lines[table_at + 51] = json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()
    bad = backup_env / "bad.jsonl"
    bad.write_bytes(_rechecksum(lines))
    execute(alias, "UPDATE product SET name = 'current' WHERE id <= 60")
    state = table_state(alias)
    with pytest.raises(InvalidBackup, match="name is NULL"):
        services.backup_restore(file=str(bad), database=alias, safety_backup=False)
    assert table_state(alias) == state
    assert get_engine(alias).capture_ddl(dataset.table_names()) == result_ddl(result)


def result_ddl(result: results.BackupResult) -> list[str]:
    return read_lines(result.path)[0]["schema"]["ddl"]


def _waiting_for_a_lock(alias: str) -> bool:
    if connections[alias].vendor == "postgresql":
        sql = ("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
               "AND wait_event_type = 'Lock'")
    else:  # the restore's statement on tenant has been waiting for a second
        sql = ("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID != CONNECTION_ID() "
               "AND DB = DATABASE() AND INFO LIKE '%%`tenant`%%' AND TIME >= 1")
    return execute(alias, sql)[0][0] > 0


@pytest.mark.slow
@pytest.mark.parametrize("alias", SERVERS)
def test_restore_killed_mid_way_changes_nothing(seeded, backup_env, alias):
    seeded(alias)
    execute(alias, "INSERT INTO tenant (id, name, slug, enable_web_context, created_at) "
                   "VALUES (5, 'extra', 'extra', %s, '2025-01-01 00:00:00')", [False])
    result = services.backup_create(database=alias, compression="none")
    execute(alias, "DELETE FROM tenant WHERE id = 5")
    execute(alias, "UPDATE product SET name = 'current' WHERE id <= 10")
    before = table_state(alias)

    # Another connection inserts tenant 5 and holds its transaction open: the restore, once it has
    # deleted the current rows and reaches tenant 5, waits on that row. Then it is killed.
    blocker = connections.create_connection(alias)
    blocker.set_autocommit(False)
    with blocker.cursor() as cursor:
        cursor.execute("INSERT INTO tenant (id, name, slug, enable_web_context, created_at) "
                       "VALUES (5, 'blocker', 'blocker', %s, '2025-01-01 00:00:00')", [False])
    child = manage(["backup_restore", result.path, "--force", "--no-safety-backup"], backup_env, alias=alias)
    try:
        kill_when(child, lambda: _waiting_for_a_lock(alias), "the locked row")
    finally:
        blocker.rollback()
        blocker.close()
    assert table_state(alias) == before

    again = services.backup_restore(file=result.name, database=alias, safety_backup=False)
    assert again.restored["tenant"] == 5


@pytest.mark.slow
@pytest.mark.parametrize("alias", SERVERS)
def test_restore_killed_while_inserting_rows_changes_nothing(seeded, backup_env, alias):
    seeded(alias, demo.DemoSize(tenants=20, products=20000, agents=2, embeddings=2000, dim=64))
    result = services.backup_create(database=alias, compression="none")
    execute(alias, "UPDATE product SET name = 'current' WHERE id <= 10")
    execute(alias, "DELETE FROM product_embeddings WHERE id > 1000")
    before = table_state(alias)

    # Progress goes to stderr; "restore product:" appears once the tenants are written (uncommitted)
    # and the 20,000 products are about to be. A kill that came too late would leave the file's rows,
    # not the rows above, so this cannot pass by luck.
    kill_at_marker(manage(["backup_restore", result.path, "--force", "--no-safety-backup"], backup_env, alias=alias),
                   "restore product:")
    assert table_state(alias) == before


@pytest.mark.parametrize("alias", ALIASES)
def test_new_rows_get_fresh_ids_after_a_restore(seeded, alias):
    seeded(alias)
    result = services.backup_create(database=alias)
    execute(alias, "DELETE FROM product_embeddings")
    execute(alias, "DELETE FROM externalagent")
    services.backup_restore(file=result.name, database=alias, safety_backup=False)
    now = "2025-09-01 00:00:00"
    execute(alias, "INSERT INTO tenant (name, slug, enable_web_context, created_at) VALUES ('n', 'n', %s, %s)",
            [False, now])
    execute(alias, "INSERT INTO product (tenant_id, name, price_cpm, delivery_type, created_at) "
                   "VALUES (1, 'n', 1.0, 'guaranteed', %s)", [now])
    execute(alias, "INSERT INTO externalagent (name, base_url, enabled, agent_type, protocol, created_at) "
                   "VALUES ('n', 'u', %s, 't', 'mcp', %s)", [True, now])
    execute(alias, "INSERT INTO product_embeddings (product_id, embedding_text, embedding_hash, embedding) "
                   "VALUES (1, 't', 'h', %s)", [b"\x00"])
    for table, top in (("tenant", 4), ("product", 60), ("externalagent", 2), ("product_embeddings", 12)):
        assert execute(alias, f"SELECT MAX(id) FROM {table}")[0][0] == top + 1, table


@pytest.mark.parametrize("alias", SERVERS)
def test_a_backup_counter_above_the_rows_survives_the_restore(seeded, alias):
    seeded(alias)
    if alias == "postgresql":
        execute(alias, "SELECT setval(pg_get_serial_sequence('product_embeddings', 'id'), 500)")
    else:
        execute(alias, "ALTER TABLE product_embeddings AUTO_INCREMENT = 501")
    result = services.backup_create(database=alias)
    drop_schema(alias)
    services.backup_restore(file=result.name, database=alias, create_schema=True)
    execute(alias, "INSERT INTO product_embeddings (product_id, embedding_text, embedding_hash, embedding) "
                   "VALUES (1, 't', 'h', %s)", [b"\x00"])
    assert execute(alias, "SELECT MAX(id) FROM product_embeddings")[0][0] == 501


@pytest.mark.parametrize("alias", SERVERS)
def test_dry_run_reports_changes_and_changes_nothing(seeded, alias):
    seeded(alias)
    result = services.backup_create(database=alias)
    execute(alias, "UPDATE product SET name = 'edited' WHERE id IN (1, 2, 3)")
    execute(alias, "DELETE FROM product_embeddings WHERE product_id IN (4, 5)")
    execute(alias, "DELETE FROM product WHERE id IN (4, 5)")
    execute(alias, "INSERT INTO externalagent VALUES (50, 'n', 'u', %s, 't', 'mcp', '2020-01-01 00:00:00')", [True])
    before = table_state(alias)
    report = services.backup_restore(file=result.name, database=alias, dry_run=True)
    assert report.dry_run
    assert (report.changes["product"].added, report.changes["product"].changed,
            report.changes["product"].removed) == (2, 3, 0)
    assert report.changes["externalagent"].removed == 1
    assert report.changes["product_embeddings"].added == 2
    assert table_state(alias) == before


@pytest.mark.parametrize("alias", SERVERS)
def test_captured_ddl_recreates_the_same_schema(seeded, alias):
    seeded(alias)
    engine = get_engine(alias)
    ddl = engine.capture_ddl(dataset.table_names())
    columns = engine.describe_all(dataset.table_names())
    drop_schema(alias)
    with transaction.atomic(using=alias):
        engine.create_schema(ddl)
    assert engine.describe_all(dataset.table_names()) == columns
    assert engine.capture_ddl(dataset.table_names()) == ddl


def test_engine_aliases_follow_the_urls():
    from django.conf import settings

    assert ("postgresql" in ALIASES) == bool(os.environ.get("ADCP_TEST_POSTGRES_URL"))
    assert ("mysql" in ALIASES) == bool(os.environ.get("ADCP_TEST_MYSQL_URL"))
    for alias in SERVERS:
        assert alias in settings.DATABASES


@pytest.mark.slow
def test_an_unreachable_server_fails_the_tests_instead_of_skipping_them(tmp_path):
    env = {**os.environ, "ADCP_TEST_POSTGRES_URL": "postgres://postgres@127.0.0.1:9/adcp_unreachable",
           "ADCP_TEST_WORKDIR": str(tmp_path)}
    env.pop("ADCP_TEST_MYSQL_URL", None)  # never touch the test databases of this run
    env.pop("CI", None)  # in CI the missing MariaDB URL would stop the run before the point is made
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "postgresql",
                          "tests/test_engines.py::test_round_trip_on_each_engine_restores_every_value"],
                         cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0, run.stdout
    assert "1 error" in run.stdout and "skipped" not in run.stdout, run.stdout
