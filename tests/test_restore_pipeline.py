"""restore.py on its own: the schema plan and the one writer, fed an event stream built from a real database."""
from __future__ import annotations

from typing import Any

import pytest
from django.db import connections

from adcp_backup import restore, validation
from adcp_backup.db import get_engine
from adcp_backup.exceptions import InvalidBackup, Problem, SchemaMismatch
from adcp_backup.format.events import RowBatch, TableEnd
from adcp_backup.progress import ProgressEvent
from adcp_backup.results import TableChange
from adcp_backup.scope import TenantScope

from .helpers import Seeded, drop_schema, engine_aliases, table_state
from .streams import StreamReader, database_stream

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")
TABLES = ["tenant", "product", "externalagent", "product_embeddings"]


def execute(alias: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params or [])
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []


def change_data(alias: str) -> None:
    """Every product renamed, the embeddings of the first tenant's products deleted."""
    execute(alias, "UPDATE product SET name = 'changed'")
    execute(alias, "DELETE FROM product_embeddings WHERE product_id IN (SELECT id FROM product WHERE tenant_id = 1)")


def run(alias: str, reader: StreamReader, *, dry_run: bool = False, scope: TenantScope | None = None,
        create_schema: bool = False) -> tuple[restore.Outcome, list[ProgressEvent]]:
    engine = get_engine(alias)
    plan = restore.plan_schema(engine, reader.header, create_schema=create_schema)
    if scope is not None:
        plan.tables = scope.tables()
    progress: list[ProgressEvent] = []

    def record(event: ProgressEvent) -> None:
        progress.append(event)

    events = validation.checked_events(reader, settings_targets=False)
    outcome = restore.restore_data(engine, events, reader.header, plan, scope=scope, dry_run=dry_run,
                                   validate=True, progress=record)
    return outcome, progress


@pytest.mark.parametrize("alias", engine_aliases())
def test_restore_data_writes_back_every_row_of_the_stream(seeded: Seeded, alias: str) -> None:
    counts = seeded(alias)
    reader = database_stream(alias, batch=25)
    before = table_state(alias)
    change_data(alias)
    changed = {t: len(rows) for t, rows in table_state(alias).items()}

    outcome, progress = run(alias, reader)

    assert table_state(alias) == before
    assert outcome.restored == counts
    assert outcome.changes == {t: TableChange(before=changed[t], after=counts[t]) for t in TABLES}
    assert (outcome.defaulted, outcome.files, outcome.environment, outcome.notes) == ({}, [], {}, [])
    finished = [(e.table, e.done) for e in progress if e.finished]
    assert finished == [(t, counts[t]) for t in TABLES]


# SQLite keeps no counter for these tables (no AUTOINCREMENT): the servers do.
@pytest.mark.parametrize("alias", [a for a in engine_aliases() if a != "default"])
def test_restore_data_gives_each_table_the_counter_of_the_stream(seeded: Seeded, alias: str) -> None:
    seeded(alias)
    engine = get_engine(alias)
    reader = database_stream(alias)
    ends = {e.name: e for e in reader.stream if isinstance(e, TableEnd)}
    assert ends["product"].sequence == 60
    ends["product"].sequence = 5000  # a backup taken after rows with higher ids were deleted
    execute(alias, "DELETE FROM product_embeddings")

    run(alias, reader)

    sequences = {t: engine.get_sequence(t) for t in TABLES}
    assert sequences == {"tenant": ends["tenant"].sequence, "product": 5000,
                         "externalagent": ends["externalagent"].sequence,
                         "product_embeddings": ends["product_embeddings"].sequence}


def test_a_dry_run_reports_what_would_change_and_changes_nothing(seeded: Seeded) -> None:
    counts = seeded()
    reader = database_stream()
    change_data("default")
    changed = table_state()
    deleted = counts["product_embeddings"] - len(changed["product_embeddings"])
    assert deleted > 0

    outcome, _ = run("default", reader, dry_run=True)

    assert table_state() == changed
    assert outcome.changes == {
        "tenant": TableChange(before=counts["tenant"], after=counts["tenant"], added=0, removed=0, changed=0),
        "product": TableChange(before=counts["product"], after=counts["product"], added=0, removed=0,
                               changed=counts["product"]),
        "externalagent": TableChange(before=counts["externalagent"], after=counts["externalagent"], added=0,
                                     removed=0, changed=0),
        "product_embeddings": TableChange(before=counts["product_embeddings"] - deleted,
                                          after=counts["product_embeddings"], added=deleted, removed=0, changed=0),
    }


def of_tenant(reader: StreamReader, tenant_id: int) -> StreamReader:
    """The stream with only the rows of one tenant, as a tenant restore's spool holds them."""
    columns = {t: [c["name"] for c in cs] for t, cs in reader.header["schema"]["tables"].items()}
    kept: dict[str, set[Any]] = {"tenant": {tenant_id}}
    links = {"tenant": ("id", "tenant"), "product": ("tenant_id", "tenant"),
             "product_embeddings": ("product_id", "product")}
    stream: list[Any] = []
    for event in reader.stream:
        if isinstance(event, RowBatch) and event.table in links:
            column, parent = links[event.table]
            at = columns[event.table].index(column)
            rows = [row for row in event.rows if row[at] in kept[parent]]
            kept.setdefault(event.table, set()).update(row[0] for row in rows)
            event = RowBatch(event.table, rows, 1, list(range(1, len(rows) + 1)))
        stream.append(event)
    return StreamReader({**reader.header, "counts": {}}, stream)


def test_a_scoped_restore_replaces_only_the_rows_of_its_tenants(seeded: Seeded) -> None:
    seeded()
    before = table_state()
    reader = of_tenant(database_stream(), 1)
    change_data("default")
    changed = table_state()
    tenant_of = dict(execute("default", "SELECT id, tenant_id FROM product"))
    assert sorted(set(tenant_of.values()))[:2] == [1, 2]  # rows of other tenants, which must keep their change

    outcome, _ = run("default", reader, scope=TenantScope((1,), ("publisher-1",)))

    expected_products = [old if tenant_of[old[0][0]] == 1 else new
                         for old, new in zip(before["product"], changed["product"])]
    assert table_state() == {**before, "product": expected_products}
    assert outcome.notes == ["externalagent: in the backup but outside the restore's scope; skipped"]
    in_stream = {table: sum(len(e.rows) for e in reader.stream if isinstance(e, RowBatch) and e.table == table)
                 for table in ("tenant", "product", "product_embeddings")}
    assert in_stream["tenant"] == 1 and in_stream["product"] == list(tenant_of.values()).count(1)
    assert outcome.restored == in_stream


def test_a_bad_row_rolls_back_everything_written_before_it(seeded: Seeded) -> None:
    seeded()
    reader = database_stream(batch=10)
    change_data("default")
    changed = table_state()
    batches = [e for e in reader.stream if isinstance(e, RowBatch) and e.table == "product_embeddings"]
    dim = [c["name"] for c in reader.header["schema"]["tables"]["product_embeddings"]].index("dim")
    batches[-1].rows[-1][dim] = "not a number"  # the last row of the file: every other row was written

    with pytest.raises(InvalidBackup) as refused:
        run("default", reader)

    row = batches[-1].first_row + len(batches[-1].rows) - 1
    assert refused.value.problems == [Problem("product_embeddings", "dim should be an integer, not str", row)]
    assert table_state() == changed


def test_the_plan_takes_the_children_of_a_replaced_parent_and_refuses_unknown_tables(seeded: Seeded) -> None:
    seeded()
    engine = get_engine("default")
    reader = database_stream()
    tenant_only = {"schema": {"engine": "sqlite", "tables": {"tenant": reader.header["schema"]["tables"]["tenant"]}}}

    plan = restore.plan_schema(engine, tenant_only, create_schema=False)

    assert [spec.name for spec in plan.tables] == ["tenant", "product", "product_embeddings"]
    assert plan.notes == ["product: not in the backup; emptied because its parent rows are replaced",
                          "product_embeddings: not in the backup; emptied because its parent rows are replaced"]
    assert (plan.create, plan.ddl, plan.drop) == (False, [], [])
    with pytest.raises(SchemaMismatch) as refused:
        restore.plan_schema(engine, {"schema": {"tables": {"auth_user": []}}}, create_schema=False)
    assert refused.value.differences == [
        "the backup holds tables this version does not know: 'auth_user'"]


def test_the_plan_refuses_a_column_the_database_lacks(seeded: Seeded) -> None:
    seeded()
    reader = database_stream()
    tables = reader.header["schema"]["tables"]
    extra = {**tables, "tenant": [*tables["tenant"], {"name": "color", "family": "text", "nullable": True}]}
    with pytest.raises(SchemaMismatch) as refused:
        restore.plan_schema(get_engine("default"), {"schema": {"tables": extra}}, create_schema=False)
    assert refused.value.differences == ["tenant.color is in the backup but not in the database"]


@pytest.mark.parametrize("alias", engine_aliases())
def test_restore_whole_creates_the_schema_in_an_empty_database_without_a_safety_backup(seeded: Seeded,
                                                                                       alias: str) -> None:
    counts = seeded(alias)
    reader = database_stream(alias)
    before = table_state(alias)
    drop_schema(alias)
    safety: list[tuple[list[str] | None, tuple[str, ...]]] = []

    def safety_backup(present: list[str] | None, global_parts: tuple[str, ...]) -> str:
        safety.append((present, global_parts))
        return "safety-backup-name"

    outcome = restore.restore_whole(get_engine(alias), reader, create_schema=True, dry_run=False, validate=True,
                                    settings_targets=False, safety_backup=safety_backup, progress=lambda event: None)

    assert table_state(alias) == before
    assert (outcome.schema_created, outcome.safety_backup, safety) == (True, None, [])
    assert outcome.restored == counts

    change_data(alias)
    again = restore.restore_whole(get_engine(alias), reader, create_schema=False, dry_run=False, validate=True,
                                  settings_targets=False, safety_backup=safety_backup, progress=lambda event: None)
    assert table_state(alias) == before
    assert (again.schema_created, again.safety_backup, safety) == (False, "safety-backup-name", [(None, ())])
