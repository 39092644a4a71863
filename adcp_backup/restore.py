"""How a full restore writes: the schema plan, the one transaction, table writers, the dry-run report, files."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import transaction

from . import dataset, settings_files
from .db.base import Engine, shipped_ddl
from .exceptions import InvalidBackup, Problem, RestoreError, SchemaMismatch
from .format.events import End, EnvironmentRecord, FileRecord, RowBatch, TableEnd, TableStart
from .progress import ProgressCallback, ProgressEvent
from .validation import RowChecker


@dataclass(frozen=True)
class TableChange:
    before: int
    after: int
    added: int | None = None
    removed: int | None = None
    changed: int | None = None



def spec_or_none(name: str) -> dataset.TableSpec | None:
    try:
        return dataset.table(name)
    except KeyError:
        return None


@dataclass
class SchemaPlan:
    tables: list[dataset.TableSpec]  # tables the restore replaces, in restore order
    create: bool = False
    ddl: list[str] = field(default_factory=list)
    live_columns: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def plan_schema(engine: Engine, header: dict[str, Any], *, create_schema: bool) -> SchemaPlan:
    """Compare the file's tables with the database's, before anything is written."""
    schema = header.get("schema") or {}
    file_tables: dict[str, list[dict[str, Any]]] = schema.get("tables") or {}
    unknown = [t for t in file_tables if spec_or_none(t) is None]
    if unknown:
        raise SchemaMismatch([f"the backup holds tables this version does not know: {', '.join(unknown)}"])
    covered = set(file_tables)
    # A replaced parent takes its children with it, even where the file has none of them.
    changed = True
    while changed:
        changed = False
        for spec in dataset.tables():
            if spec.name not in covered and any(fk.table in covered for fk in spec.foreign_keys):
                covered.add(spec.name)
                changed = True
    tables = [spec for spec in dataset.tables() if spec.name in covered]
    plan = SchemaPlan(tables=tables)
    for spec in tables:
        if spec.name not in file_tables:
            plan.notes.append(f"{spec.name}: not in the backup; emptied because its parent rows are replaced")

    if schema.get("fts") and not engine.supports_fts:
        plan.notes.append(
            f"{dataset.FTS_TABLE}: the full-text index exists only on SQLite; skipped on {engine.vendor}")
    existing = engine.existing_tables()
    registry = dataset.table_names()
    missing = [t for t in registry if t not in existing]
    if missing:
        if len(missing) == len(registry) or create_schema:
            if len(missing) != len(registry):
                raise SchemaMismatch(
                    [f"tables {', '.join(missing)} are missing but others exist: "
                     "--create-schema only creates the whole schema in a database that has none of it"]
                )
            plan.create = True
            if schema.get("engine") == engine.vendor and schema.get("ddl"):
                plan.ddl = list(schema["ddl"])
            else:
                plan.ddl = shipped_ddl(engine.vendor)
                if schema.get("engine") and schema.get("engine") != engine.vendor:
                    plan.notes.append(
                        f"schema created from the AdCP {engine.vendor} DDL "
                        f"(the backup came from {schema.get('engine')})"
                    )
            for spec in dataset.tables():
                plan.live_columns[spec.name] = [c.name for c in spec.columns]
            return plan
        raise SchemaMismatch([f"table {t} is missing (use --create-schema on an empty database)" for t in missing])

    differences: list[str] = []
    for spec in tables:
        live = {c.name: c for c in engine.describe(spec.name)}
        plan.live_columns[spec.name] = list(live)
        for column in file_tables.get(spec.name, []):
            name = column.get("name")
            if name not in live:
                differences.append(f"{spec.name}.{name} is in the backup but not in the database")
                continue
            if column.get("family") != live[name].family:
                differences.append(
                    f"{spec.name}.{name} is {column.get('family')} in the backup "
                    f"but {live[name].family} in the database"
                )
            if column.get("nullable") and not live[name].nullable:
                differences.append(f"{spec.name}.{name} may be NULL in the backup but is NOT NULL in the database")
        file_names = {c.get("name") for c in file_tables.get(spec.name, [])}
        for name, live_column in live.items():
            if spec.name in file_tables and name not in file_names and not live_column.nullable:
                declared = next((c for c in spec.columns if c.name == name), None)
                if declared is None or not declared.has_default:
                    differences.append(f"{spec.name}.{name} is NOT NULL in the database and missing from the backup")
    if differences:
        raise SchemaMismatch(differences)
    return plan


@dataclass
class Outcome:
    restored: dict[str, int]
    changes: dict[str, TableChange]
    defaulted: dict[str, list[str]]
    files: list[FileRecord]
    environment: dict[str, Any]
    notes: list[str]


def restore_data(engine: Engine, reader: Any, header: dict[str, Any], plan: SchemaPlan, *,
                  dry_run: bool, validate: bool, progress: ProgressCallback) -> Outcome:
    connection = engine.connection
    source_vendor = (header.get("schema") or {}).get("engine") or (header.get("source") or {}).get("engine")
    expected = header.get("counts") or {}
    in_scope = {spec.name for spec in plan.tables}
    restored: dict[str, int] = {spec.name: 0 for spec in plan.tables}
    defaulted: dict[str, list[str]] = {}
    files: list[FileRecord] = []
    environment: dict[str, Any] = {}
    notes: list[str] = []
    changes: dict[str, TableChange] = {}
    sequences: dict[str, int | None] = {}
    problems: list[Problem] = []

    if plan.create and not connection.features.can_rollback_ddl and not dry_run:
        # This engine commits DDL at once: the tables first, then the data atomically; a failure drops them.
        try:
            with connection.wrap_database_errors:
                engine.create_schema(plan.ddl)
            return restore_data(engine, reader, header, replace(plan, create=False), dry_run=dry_run,
                                 validate=validate, progress=progress)
        except BaseException:
            engine.drop_tables(dataset.table_names())  # a failed restore leaves no half-made schema behind
            raise
    elif plan.create and not connection.features.can_rollback_ddl:
        raise RestoreError(f"A dry run cannot create tables on {engine.vendor}, which commits DDL at once.")

    with connection.wrap_database_errors, engine.restore_transaction():
        if plan.create and connection.features.can_rollback_ddl:
            engine.create_schema(plan.ddl)
        before = {spec.name: engine.count(spec.name) for spec in plan.tables}
        if dry_run:
            snapshot_for_diff(engine, plan.tables)
        fts = engine.supports_fts and engine.fts_present()
        triggers = engine.fts_suspend() if fts else []
        engine.empty_tables([spec.name for spec in reversed(plan.tables)])

        current: dict[str, Any] = {}
        for event in reader.events():
            if isinstance(event, TableStart):
                if event.name not in in_scope:
                    notes.append(f"{event.name}: in the backup but outside the restore's scope; skipped")
                    current[event.name] = None
                    continue
                current[event.name] = TableWriter(engine, dataset.table(event.name), event,
                                                   plan.live_columns.get(event.name), source_vendor, validate)
                if current[event.name].defaulted:
                    defaulted[event.name] = current[event.name].defaulted
                progress(ProgressEvent("restore", event.name, 0, expected.get(event.name)))
            elif isinstance(event, RowBatch):
                table_writer = current.get(event.table)
                if table_writer is None:
                    continue
                problems.extend(table_writer.write(event.rows, event.first_row))
                if problems:
                    raise InvalidBackup(problems)
                restored[event.table] += len(event.rows)
                progress(ProgressEvent("restore", event.table, restored[event.table], expected.get(event.table)))
            elif isinstance(event, TableEnd):
                if event.name in in_scope:
                    sequences[event.name] = event.sequence
                    progress(ProgressEvent("restore", event.name, restored[event.name], restored[event.name],
                                           finished=True))
            elif isinstance(event, FileRecord):
                files.append(event)
            elif isinstance(event, EnvironmentRecord):
                environment = {
                    "variables": settings_files.mask_variables(event.variables),
                    "redacted": event.redacted,
                    "feature_flags": event.feature_flags,
                    "applied": False,
                }
            elif isinstance(event, End):
                pass

        for spec in plan.tables:
            engine.reset_sequence(spec, sequences.get(spec.name))
        if fts:
            engine.fts_rebuild()
            engine.fts_resume(triggers)
            problems.extend(engine.fts_check())
        problems.extend(engine.check_foreign_keys(plan.tables))
        for spec in plan.tables:
            actual = engine.count(spec.name)
            if actual != restored[spec.name]:
                problems.append(Problem(spec.name, f"{restored[spec.name]} rows written but {actual} in the table"))
        if problems:
            raise InvalidBackup(problems)
        for spec in plan.tables:
            changes[spec.name] = TableChange(before=before[spec.name], after=restored[spec.name])
        if dry_run:
            changes = diff_report(engine, plan.tables, before, restored)
            transaction.set_rollback(True, using=engine.alias)
    return Outcome(restored, changes, defaulted, files, environment, notes)


class TableWriter:
    """Inserts one table's rows: checks them, adapts them to the engine, fills defaulted columns."""

    def __init__(self, engine: Engine, spec: dataset.TableSpec, start: TableStart, live_columns: list[str] | None,
                 source_vendor: str | None, validate: bool) -> None:
        self.engine = engine
        self.spec = spec
        self.source_vendor = source_vendor
        self.checker = RowChecker(spec, start.columns, start.families) if validate else None
        live = live_columns or spec.column_names
        self.defaulted = [c for c in live if c not in start.columns]
        self.defaults: list[Any] = []
        for name in self.defaulted:
            try:
                declared = spec.column(name)
            except KeyError:
                self.defaults.append(None)
                continue
            self.defaults.append(declared.default if declared.has_default else None)
        self.columns = list(start.columns) + self.defaulted
        self.families = list(start.families) + [column_family(spec, c) for c in self.defaulted]

    def write(self, rows: list[list[Any]], first_row: int) -> list[Problem]:
        if self.checker is not None:
            problems = self.checker.check(rows, first_row)
            if problems:
                return problems
        if self.defaults:
            for row in rows:
                row.extend(self.defaults)
        rows = self.engine.adapt_rows(self.spec, self.columns, self.families, rows, self.source_vendor)
        self.engine.insert_rows(self.spec, self.columns, rows)
        return []


def column_family(spec: dataset.TableSpec, column: str) -> str:
    try:
        return spec.column(column).family
    except KeyError:
        return dataset.TEXT


def snapshot_for_diff(engine: Engine, tables: Sequence[dataset.TableSpec]) -> None:
    with engine.connection.cursor() as cursor:
        for spec in tables:
            temp = engine.quote(f"adcp_before_{spec.name}")
            cursor.execute(engine.drop_temporary_sql(f"adcp_before_{spec.name}"))
            cursor.execute(f"CREATE TEMPORARY TABLE {temp} AS SELECT * FROM {engine.quote(spec.name)}")


def diff_report(engine: Engine, tables: Sequence[dataset.TableSpec], before: dict[str, int],
                 restored: dict[str, int]) -> dict[str, TableChange]:
    changes = {}
    with engine.connection.cursor() as cursor:
        for spec in tables:
            table = engine.quote(spec.name)
            old = engine.quote(f"adcp_before_{spec.name}")
            pk = engine.quote(spec.primary_key)
            cols = engine.column_list([c.name for c in spec.columns])
            cursor.execute(f"SELECT COUNT(*) FROM {table} n "
                           f"WHERE NOT EXISTS (SELECT 1 FROM {old} o WHERE o.{pk} = n.{pk})")
            added = cursor.fetchone()[0]
            cursor.execute(f"SELECT COUNT(*) FROM {old} o "
                           f"WHERE NOT EXISTS (SELECT 1 FROM {table} n WHERE n.{pk} = o.{pk})")
            removed = cursor.fetchone()[0]
            cursor.execute(
                f"SELECT COUNT(*) FROM (SELECT {cols} FROM {table} EXCEPT SELECT {cols} FROM {old}) d"
            )
            differing = cursor.fetchone()[0]
            changes[spec.name] = TableChange(before=before[spec.name], after=restored[spec.name], added=added,
                                             removed=removed, changed=max(0, differing - added))
            cursor.execute(engine.drop_temporary_sql(f"adcp_before_{spec.name}"))
    return changes


def restore_files(records: list[FileRecord], *, dry_run: bool, name: str = "the backup",
                  restored: dict[str, int] | None = None) -> list[dict[str, str]]:
    """Write the settings files after the database committed (their records were checked before the commit).

    A file that cannot be written now raises SettingsFilesNotWritten: the database WAS restored."""
    return settings_files.write_records(records, dry_run=dry_run, name=name, restored=restored)
