"""The one restore writer: its dry-run report (whole and per tenant), sequences that a restore which does not
commit never moves backwards, and a schema of empty tables that --create-schema may replace."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from adcp_backup import dataset, demo, services
from adcp_backup.db import get_engine
from adcp_backup.db.base import shipped_ddl
from adcp_backup.exceptions import InvalidBackup, RestoreError, SchemaMismatch

from . import forge
from .helpers import drop_schema, engine_params, table_state
from .processes import kill_at_marker, kill_when, manage

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")
MEDIUM = demo.DemoSize(tenants=6, products=3000, agents=3, embeddings=600, dim=16)


def execute(alias: str, sql: str, params: list[Any] | None = None) -> Any:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall() if cursor.description else cursor.rowcount


def edit_after_the_backup(alias: str) -> None:
    """Rows changed (one to NULL, one from NULL), removed and added, in several tenants and globally.

    Products go round the first five of the six tenants: product i belongs to tenant (i - 1) % 5 + 1."""
    execute(alias, "UPDATE product SET name = 'edited' WHERE id IN (1, 2, 3, 7)")  # tenants 1, 2, 3, 2
    execute(alias, "UPDATE product SET description = NULL WHERE id = 13")  # tenant 3; description was text
    execute(alias, "UPDATE product SET description = 'now text' WHERE id = 14")  # tenant 4; i % 7 == 0: NULL
    execute(alias, "DELETE FROM product_embeddings WHERE product_id IN (17, 20)")
    execute(alias, "DELETE FROM product WHERE id IN (17, 20)")  # tenants 2 and 5
    for new_id, tenant in ((5001, 1), (5002, 2), (5003, 2)):
        execute(alias, "INSERT INTO product (id, tenant_id, name, price_cpm, delivery_type, created_at) "
                       "VALUES (%s, %s, 'new', 1.5, 'guaranteed', '2025-09-01 00:00:00')", [new_id, tenant])
    execute(alias, "UPDATE externalagent SET enabled = %s WHERE id = 1", [False])


def counts(change: Any) -> tuple[int | None, int | None, int | None]:
    return change.added, change.removed, change.changed


@pytest.mark.parametrize("alias", engine_params())
def test_dry_run_reports_added_removed_and_changed_rows_and_changes_nothing(seeded, alias):
    seeded(alias, MEDIUM)
    made = services.backup_create(database=alias)
    embeddings_of_17_20 = execute(alias, "SELECT COUNT(*) FROM product_embeddings WHERE product_id IN (17, 20)")[0][0]
    edit_after_the_backup(alias)
    before = table_state(alias)

    whole = services.backup_restore(file=made.name, database=alias, dry_run=True)
    assert counts(whole.changes["product"]) == (2, 3, 6)  # 17, 20 back; 5001-5003 gone; 1, 2, 3, 7, 13, 14
    assert counts(whole.changes["externalagent"]) == (0, 0, 1)
    assert counts(whole.changes["tenant"]) == (0, 0, 0)
    assert counts(whole.changes["product_embeddings"]) == (embeddings_of_17_20, 0, 0)
    assert whole.changes["product"].before == 3001 and whole.changes["product"].after == 3000
    assert table_state(alias) == before

    # Tenant 2 (products 2, 7, 12, 17, ...): only its own rows are compared.
    one = services.backup_restore(file=made.name, database=alias, dry_run=True, tenants=["publisher-2"])
    assert counts(one.changes["product"]) == (1, 2, 2)  # 17 back; 5002, 5003 gone; 2, 7
    assert one.changes["product"].before == 601 and one.changes["product"].after == 600
    assert counts(one.changes["tenant"]) == (0, 0, 0)
    assert "externalagent" not in one.changes
    assert table_state(alias) == before
    assert [e for e in services.backup_list() if e.purpose == "safety"] == []


def _sequences(alias: str) -> dict[str, int]:
    """Each table's counter: the largest id it has handed out (PostgreSQL's last_value, minus one when unused)."""
    found = {}
    for spec in dataset.tables():
        sequence = execute(alias, "SELECT pg_get_serial_sequence(%s, 'id')", [spec.name])[0][0]
        last_value, is_called = execute(alias, f"SELECT last_value, is_called FROM {sequence}")[0]
        found[spec.name] = last_value if is_called else last_value - 1
    return found


def _tops(alias: str) -> dict[str, int]:
    return {spec.name: execute(alias, f"SELECT COALESCE(MAX(id), 0) FROM {spec.name}")[0][0]
            for spec in dataset.tables()}


def _insert_without_ids(alias: str) -> None:
    now = "2025-09-01 00:00:00"
    execute(alias, "INSERT INTO tenant (name, slug, enable_web_context, created_at) VALUES ('n', %s, false, %s)",
            [f"new-{time.monotonic_ns()}", now])
    execute(alias, "INSERT INTO product (tenant_id, name, price_cpm, delivery_type, created_at) "
                   "VALUES (1, 'n', 1.0, 'guaranteed', %s)", [now])
    execute(alias, "INSERT INTO externalagent (name, base_url, enabled, agent_type, protocol, created_at) "
                   "VALUES ('n', 'u', true, 't', 'mcp', %s)", [now])
    execute(alias, "INSERT INTO product_embeddings (product_id, embedding_text, embedding_hash, embedding) "
                   "VALUES (1, 't', 'h', %s)", [b"\x00"])


def _never_backwards(alias: str, before: dict[str, int]) -> None:
    after = _sequences(alias)
    tops = _tops(alias)
    for table in after:
        assert after[table] >= before[table], (table, before, after)
        assert after[table] >= tops[table], (table, tops, after)
    _insert_without_ids(alias)  # the application's next INSERT gets a fresh id


@pytest.mark.parametrize("alias", engine_params(("postgresql",)))
def test_postgresql_sequences_never_go_down_after_a_dry_run_or_a_failed_restore(seeded, backup_env, alias):
    seeded(alias)
    older = services.backup_create(database=alias, compression="none")
    for _ in range(3):
        _insert_without_ids(alias)  # the database moves on: every counter is above the backup's
    orphan = forge.forge(older.path, backup_env / "orphan.jsonl", _orphan_product)

    before = _sequences(alias)
    state = table_state(alias)
    services.backup_restore(file=older.name, database=alias, dry_run=True)
    assert table_state(alias) == state
    _never_backwards(alias, before)

    before, state = _sequences(alias), table_state(alias)
    with pytest.raises(InvalidBackup, match="777"):  # found by the key check, after the sequences were set
        services.backup_restore(file=str(orphan), database=alias, safety_backup=False, skip_validation=True)
    assert table_state(alias) == state
    _never_backwards(alias, before)

    # A tenant restore never lowers a counter either, committed or not.
    before = _sequences(alias)
    services.backup_restore(file=older.name, database=alias, tenants=["publisher-2"], safety_backup=False)
    _never_backwards(alias, before)

    # A whole restore that commits brings the counters down to the backup's rows.
    services.backup_restore(file=older.name, database=alias, safety_backup=False)
    assert _sequences(alias) == _tops(alias) == {"tenant": 4, "product": 60, "externalagent": 2,
                                                  "product_embeddings": 12}


def _orphan_product(lines: list[forge.Line]) -> list[forge.Line]:
    at = next(i for i, line in enumerate(lines) if isinstance(line, dict) and line.get("name") == "product")
    row = lines[at + 1]
    assert isinstance(row, list)
    row[1] = 777
    return lines


def _restore_in_a_child(alias: str, file: str, cwd: Path, *options: str) -> subprocess.Popen[str]:
    return manage(["backup_restore", file, "--force", "--no-safety-backup", *options], cwd, alias=alias)


@pytest.mark.slow
@pytest.mark.parametrize("alias", engine_params(("postgresql",)))
def test_postgresql_sequences_never_go_down_when_a_restore_is_killed(seeded, backup_env, alias):
    seeded(alias, demo.DemoSize(tenants=10, products=20000, agents=2, embeddings=2000, dim=64))
    older = services.backup_create(database=alias, compression="none")
    for _ in range(3):
        _insert_without_ids(alias)

    # Killed while it writes rows.
    before, state = _sequences(alias), table_state(alias)
    kill_at_marker(_restore_in_a_child(alias, older.path, backup_env), "restore product:")
    assert table_state(alias) == state
    _never_backwards(alias, before)

    # Killed after its commit, while it brings the counters down: another session holds product_embeddings'
    # sequence (ALTER SEQUENCE), so the last counter waits; the ones before it are settled, none is below its rows.
    blocker = connections.create_connection(alias)
    blocker.set_autocommit(False)
    with blocker.cursor() as cursor:
        cursor.execute("ALTER SEQUENCE product_embeddings_id_seq INCREMENT BY 1")
    child = _restore_in_a_child(alias, older.path, backup_env)
    try:
        kill_when(child, lambda: execute(alias, "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = "
                                                "current_database() AND wait_event_type = 'Lock' AND query LIKE "
                                                "'%%setval%%'")[0][0] > 0, "the sequences", timeout=120)
    finally:
        blocker.rollback()
        blocker.close()
    assert execute(alias, "SELECT COUNT(*) FROM product")[0][0] == 20000  # the restore had committed
    after, tops = _sequences(alias), _tops(alias)
    assert all(after[t] >= tops[t] for t in after), (after, tops)
    _insert_without_ids(alias)


@pytest.mark.parametrize("alias", engine_params())
def test_create_schema_replaces_an_adcp_schema_whose_tables_are_all_empty(seeded, backup_env, alias):
    seeded(alias)
    made = services.backup_create(database=alias)
    expected = table_state(alias)
    # What a first restore cut short on an engine that commits DDL at once can leave: some tables, all empty.
    drop_schema(alias)
    engine = get_engine(alias)
    engine.create_schema(shipped_ddl(engine.vendor))
    execute(alias, "DROP TABLE product_embeddings")
    with pytest.raises(SchemaMismatch, match="--create-schema"):
        services.backup_restore(file=made.name, database=alias)

    result = services.backup_restore(file=made.name, database=alias, create_schema=True)
    assert result.schema_created
    assert table_state(alias) == expected

    # Tables that hold rows are never dropped to make room.
    execute(alias, "DELETE FROM product_embeddings")
    execute(alias, "DROP TABLE product_embeddings")
    with pytest.raises(SchemaMismatch, match="hold rows"):
        services.backup_restore(file=made.name, database=alias, create_schema=True)
    assert execute(alias, "SELECT COUNT(*) FROM product")[0][0] == 60


@pytest.mark.slow
@pytest.mark.parametrize("alias", engine_params(("mysql",)))
def test_a_first_restore_killed_on_mariadb_can_simply_run_again(seeded, backup_env, alias):
    seeded(alias, demo.DemoSize(tenants=10, products=20000, agents=2, embeddings=500, dim=16))
    made = services.backup_create(database=alias, compression="none")
    expected = table_state(alias)
    drop_schema(alias)

    kill_at_marker(_restore_in_a_child(alias, made.path, backup_env, "--create-schema"), "restore product:")
    existing = get_engine(alias).existing_tables()
    assert set(dataset.table_names()) & existing  # the DDL had committed, the rows had not
    assert all(execute(alias, f"SELECT COUNT(*) FROM {t}")[0][0] == 0 for t in dataset.table_names() if t in existing)

    services.backup_restore(file=made.name, database=alias, create_schema=True)
    assert table_state(alias) == expected


def _first_row(table: str, column: str, value: Any) -> Any:
    def edit(lines: list[forge.Line]) -> list[forge.Line]:
        at = next(i for i, line in enumerate(lines) if isinstance(line, dict) and line.get("kind") == "table"
                  and line.get("name") == table)
        record, row = lines[at], lines[at + 1]
        assert isinstance(record, dict) and isinstance(row, list)
        position = [c["name"] for c in record["columns"]].index(column)
        row[position] = value(row[position]) if callable(value) else value
        return lines
    return edit


def _announced(lines: list[forge.Line]) -> list[forge.Line]:
    forge.header(lines)["counts"]["product"] += 1
    return lines


def _sequence(kind: str, value: Any) -> Any:
    def edit(lines: list[forge.Line]) -> list[forge.Line]:
        for line in lines:
            if isinstance(line, dict) and line.get("kind") == kind and line.get("name") == "product_embeddings":
                line["sequence"] = value
        return lines
    return edit


REFUSED = {
    "header count": (_announced, "header announces"),
    "SQL for a sequence": (_sequence("table_end", "12; DROP TABLE auth_user"), "is not a counter"),
    "a sequence no engine holds": (_sequence("table", 2**63), "is not a counter"),
    "text in a float column": (_first_row("product", "price_cpm", "cheap"), "price_cpm should be a number"),
    "embedding shorter than its dim": (_first_row("product_embeddings", "dim", lambda dim: dim + 1),
                                       "embedding holds"),
    "NULL in a NOT NULL column": (_first_row("product", "name", None), "name is NULL"),
}


@pytest.mark.parametrize("case", list(REFUSED))
@pytest.mark.parametrize("alias", engine_params())
def test_a_restore_refuses_what_validation_refuses_even_with_skip_validation(seeded, backup_env, alias, case):
    seeded(alias)
    made = services.backup_create(database=alias, compression="none")
    edit, needle = REFUSED[case]
    bad = forge.forge(made.path, backup_env / "bad.jsonl", edit)
    report = services.backup_validate(file=str(bad))
    assert not report.valid and any(needle in p.message for p in report.problems), report.problems
    execute(alias, "UPDATE product SET name = 'after the backup' WHERE id < 5")
    state = table_state(alias)
    for skip in (False, True):
        # Without validation a NULL is refused by the database's NOT NULL constraint instead (exit 1).
        with pytest.raises((InvalidBackup, RestoreError)) as refused:
            services.backup_restore(file=str(bad), database=alias, safety_backup=False, skip_validation=skip)
        if not (skip and case == "NULL in a NOT NULL column"):
            assert needle in str(refused.value) + str(getattr(refused.value, "problems", "")), refused.value
        assert table_state(alias) == state
