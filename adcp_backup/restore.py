"""How every restore writes, whole or for some tenants: the schema plan, the one transaction, table writers,
the dry-run report, files."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from django.db import transaction

from . import dataset, settings_files, validation
from .db import limits
from .db.base import Engine, shipped_ddl
from .exceptions import InvalidBackup, Problem, RestoreError, SchemaMismatch
from .format.events import BackupReader, End, EnvironmentRecord, Event, FileRecord, RowBatch, TableEnd, TableStart
from .progress import ProgressCallback, ProgressEvent
from .results import TableChange
from .validation import RowChecker


@dataclass
class SchemaPlan:
    tables: list[dataset.TableSpec]  # tables the restore replaces, in restore order
    create: bool = False
    ddl: list[str] = field(default_factory=list)
    live_columns: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)  # empty AdCP tables to drop before the schema is created


def plan_schema(engine: Engine, header: dict[str, Any], *, create_schema: bool) -> SchemaPlan:
    """Compare the file's tables with the database's, before anything is written.

    The header's names were checked against the registry (validation.header_problems); the header's DDL is
    never used: a schema is created from the DDL this app ships for the target engine."""
    schema = header.get("schema") or {}
    file_tables: dict[str, list[dict[str, Any]]] = schema.get("tables") or {}
    unknown = [t for t in file_tables if validation.spec_or_none(t) is None]
    if unknown:
        raise SchemaMismatch([f"the backup holds tables this version does not know: {', '.join(map(repr, unknown))}"])
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
        present = [t for t in registry if t in existing]
        if present and create_schema and not any(engine.has_rows(t) for t in present):
            # An AdCP schema whose tables are all empty holds nothing to lose: a first restore cut short on an
            # engine that commits DDL at once can simply run again.
            plan.drop = present + ([dataset.FTS_TABLE] if engine.supports_fts and dataset.FTS_TABLE in existing
                                   else [])
            plan.notes.append(f"the empty tables {', '.join(present)} were dropped and the schema created anew")
        elif present:
            if create_schema:
                raise SchemaMismatch(
                    [f"tables {', '.join(missing)} are missing but others exist and hold rows: "
                     "--create-schema only creates the whole schema in a database that has none of it"]
                )
            raise SchemaMismatch(
                [f"table {t} is missing (use --create-schema on an empty database)" for t in missing])
        plan.create = True
        plan.ddl = shipped_ddl(engine.vendor)
        if schema.get("engine") and schema.get("engine") != engine.vendor:
            plan.notes.append(
                f"schema created from the AdCP {engine.vendor} DDL (the backup came from {schema.get('engine')})")
        for spec in dataset.tables():
            plan.live_columns[spec.name] = [c.name for c in spec.columns]
        return plan

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


class RowScope(Protocol):
    """Which rows of a table a restore replaces (a tenant scope); no scope means every row."""

    def where(self, engine: Engine, spec: dataset.TableSpec) -> tuple[str, list[Any]]: ...


@dataclass
class Outcome:
    restored: dict[str, int]
    changes: dict[str, TableChange]
    defaulted: dict[str, list[str]]
    files: list[FileRecord]
    environment: dict[str, Any]
    notes: list[str]
    safety_backup: str | None = None
    schema_created: bool = False
    tenants: tuple[str, ...] = ()  # the tenants a scoped restore replaced; none for a whole restore


SafetyBackup = Callable[[list[str] | None, tuple[str, ...]], str]
"""Writes a safety backup of what a restore replaces (these tenants' rows and global parts; None: everything)
and returns its name."""


def restore_whole(engine: Engine, reader: BackupReader, *, create_schema: bool, dry_run: bool, validate: bool,
                  settings_targets: bool, safety_backup: SafetyBackup | None, progress: ProgressCallback) -> Outcome:
    """Replace every AdCP table with the file's: plan the schema, take the safety backup (not when the schema is
    created: there is nothing to keep), then the one writer, fed by the checked events."""
    header = reader.header
    plan = plan_schema(engine, header, create_schema=create_schema)
    safety_name = safety_backup(None, ()) if safety_backup is not None and not dry_run and not plan.create else None
    events = validation.checked_events(reader, settings_targets=settings_targets)
    outcome = restore_data(engine, events, header, plan, dry_run=dry_run,
                           validate=validate, progress=progress)
    outcome.notes[:0] = plan.notes
    outcome.safety_backup = safety_name
    outcome.schema_created = plan.create
    return outcome


def restore_data(engine: Engine, events: Iterable[Event], header: dict[str, Any], plan: SchemaPlan, *,
                 scope: RowScope | None = None, dry_run: bool, validate: bool,
                 progress: ProgressCallback) -> Outcome:
    """The one writer of every restore, whole or scoped: in one transaction it snapshots what the dry run
    compares with, deletes the rows in scope, writes the file's rows, raises the sequences, checks keys, counts
    and the full-text index, and reports; ``events`` come from validation.checked_events (or a scope's spool).

    Every statement is built from the registry and the engine; the file supplies values, never SQL."""
    connection = engine.connection
    if plan.create and not connection.features.can_rollback_ddl and not dry_run:
        # This engine commits DDL at once: the tables first, then the data atomically; a failure drops them.
        try:
            with connection.wrap_database_errors:
                engine.drop_tables(plan.drop)
                engine.create_schema(plan.ddl)
            return restore_data(engine, events, header, replace(plan, create=False, drop=[]), scope=scope,
                                dry_run=dry_run, validate=validate, progress=progress)
        except BaseException:
            engine.drop_tables(dataset.table_names())  # a failed restore leaves no half-made schema behind
            raise
    elif plan.create and not connection.features.can_rollback_ddl:
        raise RestoreError(f"A dry run cannot create tables on {engine.vendor}, which commits DDL at once.")

    with connection.wrap_database_errors, engine.restore_transaction():
        if plan.create:
            engine.drop_tables(plan.drop)
            engine.create_schema(plan.ddl)
        return _write(engine, events, header, plan, scope, dry_run=dry_run, validate=validate, progress=progress)


def _where(scope: RowScope | None, engine: Engine, spec: dataset.TableSpec) -> tuple[str, list[Any]]:
    return ("", []) if scope is None else scope.where(engine, spec)


def _write(engine: Engine, events: Iterable[Event], header: dict[str, Any], plan: SchemaPlan,
           scope: RowScope | None, *, dry_run: bool, validate: bool, progress: ProgressCallback) -> Outcome:
    source_vendor = (header.get("schema") or {}).get("engine") or (header.get("source") or {}).get("engine")
    expected = {} if scope is not None else (header.get("counts") or {})
    tables = plan.tables
    in_scope = {spec.name for spec in tables}
    where = {spec.name: _where(scope, engine, spec) for spec in tables}
    restored: dict[str, int] = {spec.name: 0 for spec in tables}
    defaulted: dict[str, list[str]] = {}
    files: list[FileRecord] = []
    environment: dict[str, Any] = {}
    notes: list[str] = []
    problems: list[Problem] = []
    diff_columns = {spec.name: [c for c in spec.column_names if c in plan.live_columns.get(spec.name, [])]
                    for spec in tables}

    before = {spec.name: engine.count(spec.name, *where[spec.name]) for spec in tables}
    # A scoped restore leaves other rows, whose ids the sequence must stay above; a whole one may lower it to the
    # backup's value, but only once the restore has committed (PostgreSQL's sequences ignore rollbacks).
    sequences: dict[str, int | None] = {
        spec.name: engine.get_sequence(spec.name) if scope is not None else None for spec in tables}
    if dry_run:
        for spec in tables:
            engine.snapshot_rows(spec, diff_columns[spec.name], *where[spec.name])
    # The whole index is rebuilt after a whole restore; a scoped one lets the triggers follow its rows.
    fts = scope is None and engine.supports_fts and engine.fts_present()
    triggers = engine.fts_suspend() if fts else []
    if scope is None:
        engine.empty_tables([spec.name for spec in reversed(tables)])
    else:
        for spec in reversed(tables):  # children first
            engine.delete_rows(spec.name, *where[spec.name])

    writers: dict[str, TableWriter | None] = {}
    for event in events:
        if isinstance(event, TableStart):
            if event.name not in in_scope:
                notes.append(f"{event.name}: in the backup but outside the restore's scope; skipped")
                writers[event.name] = None
                continue
            writer = TableWriter(engine, dataset.table(event.name), event, plan.live_columns.get(event.name),
                                 source_vendor, validate)
            writers[event.name] = writer
            if writer.defaulted:
                defaulted[event.name] = writer.defaulted
            progress(ProgressEvent("restore", event.name, 0, expected.get(event.name)))
        elif isinstance(event, RowBatch):
            table_writer = writers.get(event.table)
            if table_writer is None:
                continue
            problems.extend(table_writer.write(event.rows, event.first_row))
            if problems:
                if event.numbers is not None:  # rows picked for a scope: report their numbers in the file
                    problems = [replace(p, row=event.numbers[p.row - event.first_row]) if p.row else p
                                for p in problems]
                raise InvalidBackup(problems)
            restored[event.table] += len(event.rows)
            progress(ProgressEvent("restore", event.table, restored[event.table], expected.get(event.table)))
        elif isinstance(event, TableEnd):
            if event.name in in_scope:
                current = sequences.get(event.name)
                if scope is None or current is None:
                    sequences[event.name] = event.sequence
                elif event.sequence is not None:
                    sequences[event.name] = max(current, event.sequence)
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

    for spec in tables:
        engine.reset_sequence(spec, sequences.get(spec.name), lower_after_commit=scope is None)
    if fts:
        engine.fts_rebuild()
        engine.fts_resume(triggers)
    if engine.supports_fts and engine.fts_present():
        problems.extend(engine.fts_check())
    problems.extend(engine.check_foreign_keys(tables))
    for spec in tables:
        actual = engine.count(spec.name, *where[spec.name])
        if actual != restored[spec.name]:
            scoped = " for these tenants" if scope is not None else ""
            problems.append(Problem(spec.name, f"{restored[spec.name]} rows written but {actual} in the table{scoped}"))
    if problems:
        raise InvalidBackup(problems)
    changes = {spec.name: TableChange(before=before[spec.name], after=restored[spec.name]) for spec in tables}
    if dry_run:
        for spec in tables:
            added, removed, changed_rows = engine.diff_rows(spec, diff_columns[spec.name], *where[spec.name])
            changes[spec.name] = TableChange(before=before[spec.name], after=restored[spec.name], added=added,
                                             removed=removed, changed=changed_rows)
        transaction.set_rollback(True, using=engine.alias)
    return Outcome(restored, changes, defaulted, files, environment, notes)


class TableWriter:
    """Inserts one table's rows: checks them, adapts them to the engine, fills defaulted columns."""

    def __init__(self, engine: Engine, spec: dataset.TableSpec, start: TableStart, live_columns: list[str] | None,
                 source_vendor: str | None, validate: bool) -> None:
        self.engine = engine
        self.spec = spec
        self.source_vendor = source_vendor
        # Without validation, NOT NULL is left to the database's constraints; types and row rules, which no
        # engine repeats alike (SQLite stores any type), are always checked.
        self.checker = RowChecker(spec, start.columns, start.families, not_null=validate)
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
        self.limits = engine.value_limits(spec.name, self.columns)  # what the live columns can store

    def write(self, rows: list[list[Any]], first_row: int) -> list[Problem]:
        if self.checker is not None:
            problems = self.checker.check(rows, first_row)
            if problems:
                return problems
        if self.defaults:
            for row in rows:
                row.extend(self.defaults)
        if self.limits is not None and (refused := self.limits.check(rows, first_row)):
            raise limits.refused(refused, self.engine.vendor)
        rows = self.engine.adapt_rows(self.spec, self.columns, self.families, rows, self.source_vendor)
        self.engine.insert_rows(self.spec, self.columns, rows)
        return []


def column_family(spec: dataset.TableSpec, column: str) -> str:
    try:
        return spec.column(column).family
    except KeyError:
        return dataset.TEXT


def restore_files(records: list[FileRecord], *, dry_run: bool, name: str = "the backup",
                  restored: dict[str, int] | None = None) -> list[dict[str, str]]:
    """Write the settings files after the database committed (their records were checked before the commit).

    A file that cannot be written now raises SettingsFilesNotWritten: the database WAS restored."""
    return settings_files.write_records(records, dry_run=dry_run, name=name, restored=restored)
