"""PostgreSQL: a REPEATABLE READ snapshot, server-side cursors for reads, COPY for writes, serial sequences."""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from django.db import DatabaseError, IntegrityError, transaction

from ..dataset import BLOB, BOOLEAN, TableSpec
from ..exceptions import Problem
from .base import Engine, LiveColumn, family_of, like_prefix, prefetched_batches

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _after_copy(method: _Method) -> _Method:
    """Ends a COPY still open on the connection before the method sends anything else."""

    @functools.wraps(method)
    def run(self: PostgreSQLEngine, *args: Any, **kwargs: Any) -> Any:
        self._finish_copy()
        return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]

_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
       pg_get_serial_sequence(%s, a.attname)
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def advisory_key(name: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of a lock name."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgreSQLEngine(Engine):
    vendor = "postgresql"

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        self._dropped_foreign_keys: list[str] = []
        self._dropped_keys: set[tuple[str, str, str]] = set()  # (table, column, parent) of each one-column key
        self._in_restore = False  # foreign keys are dropped and re-added only inside restore_transaction
        self._copy: tuple[str, Any, Any, Any] | None = None  # (table and columns, cursor, COPY manager, COPY)

    # Statements of the base class, each ending an open COPY first.
    existing_tables = _after_copy(Engine.existing_tables)
    create_schema = _after_copy(Engine.create_schema)
    count = _after_copy(Engine.count)
    has_rows = _after_copy(Engine.has_rows)
    delete_rows = _after_copy(Engine.delete_rows)
    diff_rows = _after_copy(Engine.diff_rows)

    @_after_copy
    def snapshot_rows(self, spec: TableSpec, columns: Sequence[str], where: str = "",
                      params: Sequence[Any] = ()) -> None:
        super().snapshot_rows(spec, columns, where, params)
        with self.connection.cursor() as cursor:  # autovacuum never analyses temporary tables: plans need it
            cursor.execute(f"ANALYZE {self.quote(self.before_table(spec))}")

    def _raw(self) -> Any:
        self.connection.ensure_connection()
        return self.connection.connection

    # -- schema ----------------------------------------------------------------------------------
    @_after_copy
    def _columns(self, table: str) -> list[tuple[str, str, bool, str | None, str | None]]:
        with self.connection.cursor() as cursor:
            cursor.execute(_COLUMNS_SQL, [self.quote(table), self.quote(table)])
            return [tuple(r) for r in cursor.fetchall()]

    def describe(self, table: str) -> list[LiveColumn]:
        return [LiveColumn(name=name, family=family_of(declared), nullable=not notnull)
                for name, declared, notnull, _default, _sequence in self._columns(table)]

    def declared_types(self, table: str) -> dict[str, str]:
        return {name: declared for name, declared, _notnull, _default, _sequence in self._columns(table)}

    @_after_copy
    def capture_ddl(self, tables: Sequence[str]) -> list[str]:
        """Sequences, tables with their keys and checks, then foreign keys and indexes: replayable in order."""
        sequences: list[str] = []
        creates: list[str] = []
        foreign: list[str] = []
        indexes: list[str] = []
        owned: list[str] = []
        with self.connection.cursor() as cursor:
            for table in tables:
                quoted = self.quote(table)
                parts: list[str] = []
                for name, declared, notnull, default, sequence in self._columns(table):
                    if sequence:
                        cursor.execute(
                            "SELECT c.relname, format_type(s.seqtypid, NULL) FROM pg_sequence s "
                            "JOIN pg_class c ON c.oid = s.seqrelid WHERE s.seqrelid = %s::regclass", [sequence])
                        seq_name, seq_type = cursor.fetchone()
                        sequences.append(f"CREATE SEQUENCE {self.quote(seq_name)} AS {seq_type}")
                        owned.append(f"ALTER SEQUENCE {self.quote(seq_name)} OWNED BY {quoted}.{self.quote(name)}")
                    column = f"{self.quote(name)} {declared}"
                    if default is not None:
                        column += f" DEFAULT {default}"
                    if notnull:
                        column += " NOT NULL"
                    parts.append(column)
                cursor.execute(
                    "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = %s::regclass ORDER BY contype, conname", [quoted])
                for conname, contype, definition in cursor.fetchall():
                    if contype == "f":
                        foreign.append(f"ALTER TABLE {quoted} ADD CONSTRAINT {self.quote(conname)} {definition}")
                    else:
                        parts.append(f"CONSTRAINT {self.quote(conname)} {definition}")
                creates.append(f"CREATE TABLE {quoted} (\n\t" + ",\n\t".join(parts) + "\n)")
                cursor.execute(
                    "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE i.indrelid = %s::regclass "
                    "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) "
                    "ORDER BY c.relname", [quoted])
                indexes.extend(r[0] for r in cursor.fetchall())
        return [*sequences, *creates, *foreign, *indexes, *owned]

    @_after_copy
    def drop_tables(self, tables: Sequence[str]) -> None:
        with self.connection.cursor() as cursor:
            for table in reversed(tables):
                cursor.execute(f"DROP TABLE IF EXISTS {self.quote(table)} CASCADE")

    # -- reading -----------------------------------------------------------------------------------
    def begin_snapshot(self) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    @_after_copy
    def read_rows(self, spec: TableSpec, columns: Sequence[str], *, batch_size: int,
                  where: str = "", params: Sequence[Any] = ()) -> Iterator[list[Sequence[Any]]]:
        sql = (f"SELECT {self.column_list(columns)} FROM {self.quote(spec.name)} {where} "
               f"ORDER BY {self.quote(spec.primary_key)}")
        # A named cursor lives in a transaction: join the caller's snapshot, or open one for this read.
        with transaction.atomic(using=self.alias, savepoint=False):
            # Binary results: no text parsing of bytea, timestamps and floats on either side.
            cursor = self._raw().cursor(name=f"adcp_read_{spec.name}", binary=True)
            cursor.itersize = batch_size
            try:
                cursor.execute(sql, tuple(params) or None)
                yield from prefetched_batches(cursor, batch_size)
            finally:
                cursor.close()

    @_after_copy
    def get_sequence(self, table: str) -> int | None:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [self.quote(table)])
            row = cursor.fetchone()
            if not row or not row[0]:
                return None
            cursor.execute(f"SELECT last_value, is_called FROM {row[0]}")
            last_value, is_called = cursor.fetchone()
            return int(last_value) if is_called else 0

    # -- scratch databases, for restore drills ---------------------------------------------------
    scratch_schemas = True

    def create_database(self, name: str, *, schema: bool = False) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(f"CREATE {'SCHEMA' if schema else 'DATABASE'} {self.quote(name)}")

    def drop_database(self, name: str, *, schema: bool = False) -> None:
        sql = (f"DROP SCHEMA IF EXISTS {self.quote(name)} CASCADE" if schema
               else f"DROP DATABASE IF EXISTS {self.quote(name)} WITH (FORCE)")
        with self.connection.cursor() as cursor:
            cursor.execute(sql)

    def databases_named(self, prefix: str) -> list[tuple[str, str]]:
        pattern = like_prefix(prefix)
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [pattern])
            found = [("database", str(row[0])) for row in cursor.fetchall()]
            cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", [pattern])
            return found + [("schema", str(row[0])) for row in cursor.fetchall()]

    def lacks_privilege(self, exc: DatabaseError) -> bool:
        return getattr(exc.__cause__, "sqlstate", None) == "42501"

    def scratch_privilege_hint(self, user: str, database: str, prefix: str) -> str:
        return (f"the role {user!r} needs the CREATEDB privilege (ALTER ROLE ... CREATEDB) or, for a temporary "
                f"schema, CREATE on database {database!r} (GRANT CREATE ON DATABASE ...)")

    # -- a lock for every machine ----------------------------------------------------------------
    shares_lock = True

    def try_lock(self, name: str) -> bool:
        return bool(self._fetch_one("SELECT pg_try_advisory_lock(%s)", [advisory_key(name)]))

    def unlock(self, name: str) -> None:
        self._fetch_one("SELECT pg_advisory_unlock(%s)", [advisory_key(name)])

    # -- writing -----------------------------------------------------------------------------------
    @_after_copy
    def empty_tables(self, tables: Sequence[str]) -> None:
        """One TRUNCATE when no other table points at these, and their foreign keys dropped until the rows
        are in, as pg_restore does: then each key is checked once, as it is added back, instead of row by row
        (and DELETE would check product.tenant_id, which has no index, by one scan of product per tenant).

        Both are transactional here. TRUNCATE locks the tables exclusively until the restore commits."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), confrelid::regclass::text, "
                "(SELECT attname FROM pg_attribute WHERE attrelid = conrelid AND attnum = conkey[1] "
                "AND cardinality(conkey) = 1) "
                "FROM pg_constraint WHERE contype = 'f' AND confrelid = ANY(%s::regclass[]) ORDER BY 1, 2",
                [[self.quote(t) for t in tables]])
            foreign_keys = cursor.fetchall()
            if not {table.strip('"') for table, *_rest in foreign_keys} <= set(tables):
                super().empty_tables(tables)
                return
            for table, name, definition, parent, column in foreign_keys if self._in_restore else ():
                cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {self.quote(name)}")
                self._dropped_foreign_keys.append(f"ALTER TABLE {table} ADD CONSTRAINT {self.quote(name)} {definition}")
                self._dropped_keys.add((table.strip('"'), column, parent.strip('"')))
            cursor.execute(f"TRUNCATE {', '.join(self.quote(t) for t in tables)}")

    @_after_copy
    def _restore_foreign_keys(self) -> None:
        with self.connection.cursor() as cursor:
            while self._dropped_foreign_keys:
                cursor.execute(self._dropped_foreign_keys.pop(0))

    @_after_copy
    def check_foreign_keys(self, tables: Sequence[TableSpec]) -> list[Problem]:
        """Add back the foreign keys the restore dropped: PostgreSQL checks every row of each as it does. Only
        when that fails, or when a key of ``tables`` was not among them, are the keys checked row by row with
        one join each, which names the orphans for the report."""
        pending = list(self._dropped_foreign_keys)
        if pending and self._dropped_cover(tables):
            try:
                with transaction.atomic(using=self.alias):  # a savepoint: a refused key leaves the restore usable
                    self._restore_foreign_keys()
                return []
            except IntegrityError:
                self._dropped_foreign_keys = pending  # rolled back to the savepoint: still dropped
        problems = super().check_foreign_keys(tables)  # row by row, for the report
        if not problems:
            self._restore_foreign_keys()
        return problems

    def _dropped_cover(self, tables: Sequence[TableSpec]) -> bool:
        """Whether every foreign key the registry declares for ``tables`` is one of the dropped constraints."""
        return all((spec.name, fk.column, fk.table) in self._dropped_keys
                   for spec in tables for fk in spec.foreign_keys)

    @contextmanager
    def restore_transaction(self) -> Iterator[None]:
        self._dropped_foreign_keys = []
        self._dropped_keys = set()
        self._in_restore = True
        try:
            with transaction.atomic(using=self.alias):
                try:
                    yield
                except BaseException as exc:
                    with suppress(Exception):  # the error to report is the one that stopped the restore
                        self._finish_copy(exc)
                    raise
                self._restore_foreign_keys()  # never commits without them; a rollback restores them anyway
        finally:
            self._dropped_foreign_keys = []
            self._dropped_keys = set()
            self._in_restore = False

    def adapt_rows(self, spec: TableSpec, columns: Sequence[str], families: Sequence[str],
                   rows: list[list[Any]], source_vendor: str | None = None) -> list[list[Any]]:
        # COPY's text input takes SQLite's "2025-08-30 07:28:26.672543", ISO datetimes and 0/1 booleans as
        # they are; only text that SQLite kept in a blob column needs turning into bytes.
        blob_idx = [i for i, f in enumerate(families) if f == BLOB]
        bool_idx = [i for i, f in enumerate(families) if f == BOOLEAN]
        for row in rows:
            for i in blob_idx:
                if type(row[i]) is str:
                    row[i] = row[i].encode("utf-8")
            for i in bool_idx:
                if type(row[i]) is int:
                    row[i] = bool(row[i])
        return rows

    def insert_rows(self, spec: TableSpec, columns: Sequence[str], rows: list[list[Any]]) -> None:
        """COPY the rows. In a restore the COPY stays open for the table's next batch, so the server stores
        one batch while this process decodes the next; the engine's next statement of any kind ends it."""
        key = f"{spec.name}({','.join(columns)})"
        if self._copy is not None and self._copy[0] != key:
            self._finish_copy()
        if self._copy is None:
            cursor = self._raw().cursor()
            manager = cursor.copy(f"COPY {self.quote(spec.name)} ({self.column_list(columns)}) FROM STDIN")
            self._copy = (key, cursor, manager, manager.__enter__())
        write_row = self._copy[3].write_row
        for row in rows:
            write_row(row)
        if not self._in_restore:
            self._finish_copy()

    def _finish_copy(self, exc: BaseException | None = None) -> None:
        """Ends the open COPY: sends its end (a duplicate key surfaces here) or, after ``exc``, cancels it
        so that the transaction can roll back."""
        if self._copy is None:
            return
        _key, cursor, manager, _copy = self._copy
        self._copy = None
        try:
            manager.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)
        finally:
            cursor.close()

    @_after_copy
    def reset_sequence(self, spec: TableSpec, minimum: int | None, *, lower_after_commit: bool = False) -> None:
        """setval is not transactional: a rolled-back restore (a dry run, a failed check, a kill) keeps whatever
        it set. So inside the restore a sequence is only ever raised, to the largest id and ``minimum``; bringing
        a higher counter down to them waits for the commit."""
        sequence = self._serial_sequence(spec)
        if sequence is None:
            return
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT COALESCE(MAX({self.quote(spec.primary_key)}), 0) FROM {self.quote(spec.name)}")
            top = max(int(cursor.fetchone()[0]), minimum or 0)
            cursor.execute(f"SELECT last_value, is_called FROM {sequence}")
            last_value, is_called = cursor.fetchone()
            issued = int(last_value) if is_called else int(last_value) - 1
            if top > issued:
                cursor.execute("SELECT setval(%s, %s, true)", [sequence, top])
        if lower_after_commit:
            transaction.on_commit(lambda: self._settle_sequence(spec, sequence, minimum), using=self.alias,
                                  robust=True)

    def _serial_sequence(self, spec: TableSpec) -> str | None:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [self.quote(spec.name), spec.primary_key])
            row = cursor.fetchone()
            return row[0] if row and row[0] else None

    def _settle_sequence(self, spec: TableSpec, sequence: str, minimum: int | None) -> None:
        """After the commit: the counter at the largest id or ``minimum``, whichever is higher, even if that is
        lower than it was. The table is locked against inserts meanwhile, so no id above it is handed out."""
        table = self.quote(spec.name)
        with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
            cursor.execute(f"SELECT COALESCE(MAX({self.quote(spec.primary_key)}), 0) FROM {table}")
            top = max(int(cursor.fetchone()[0]), minimum or 0)
            if top > 0:
                cursor.execute("SELECT setval(%s, %s, true)", [sequence, top])
            else:
                cursor.execute("SELECT setval(%s, 1, false)", [sequence])
