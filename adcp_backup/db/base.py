"""The interface every database engine implements, with the parts that plain SQL does the same everywhere."""
from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import resources
from typing import Any

from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from ..dataset import BLOB, BOOLEAN, DATETIME, FLOAT, INTEGER, TEXT, TableSpec
from ..exceptions import Problem
from .limits import ValueLimits


@dataclass(frozen=True)
class LiveColumn:
    name: str
    family: str
    nullable: bool

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "nullable": self.nullable}


def family_of(declared: str) -> str:
    """The column family of a declared SQL type, by the rules SQLite uses for affinity, extended."""
    t = declared.lower()
    if "bool" in t or t.startswith("tinyint(1)"):
        return BOOLEAN
    if "int" in t or t == "serial" or t == "bigserial":
        return INTEGER
    if "char" in t or "clob" in t or "text" in t:
        return TEXT
    if "blob" in t or "bytea" in t or "binary" in t or t == "":
        return BLOB
    if "real" in t or "floa" in t or "doub" in t or "numeric" in t or "decimal" in t:
        return FLOAT
    if "date" in t or "time" in t:
        return DATETIME
    return TEXT


def fingerprint(columns_by_table: dict[str, list[dict[str, Any]]]) -> str:
    """A short hash of table -> ordered (column, family, nullability): equal on every engine."""
    h = hashlib.sha256()
    for table in sorted(columns_by_table):
        h.update(table.encode() + b"\0")
        for c in columns_by_table[table]:
            h.update(f"{c['name']}:{c['family']}:{int(bool(c['nullable']))};".encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def shipped_ddl(vendor: str) -> list[str]:
    """The AdCP application's own DDL for an engine, as statements, from the files this app ships."""
    text = resources.files("adcp_backup").joinpath("schema", f"{vendor}.sql").read_text(encoding="utf-8")
    return split_sql(text)


def split_sql(text: str) -> list[str]:
    """Statements of a DDL script; a trigger body's inner semicolons stay inside its statement."""
    statements: list[str] = []
    current: list[str] = []
    in_trigger = False
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        current.append(line)
        upper = stripped.upper()
        if upper.startswith("CREATE TRIGGER"):
            in_trigger = True
        if in_trigger:
            if upper == "END;":
                statements.append("\n".join(current).rstrip().rstrip(";"))
                current, in_trigger = [], False
        elif stripped.endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if current and "".join(current).strip():
        statements.append("\n".join(current).rstrip().rstrip(";"))
    return statements


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching names that start with ``prefix``, its ``_`` and ``%`` taken literally."""
    return prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"


def fetch_batches(cursor: Any, batch_size: int) -> Iterator[list[Any]]:
    """The rows of an executed cursor, ``batch_size`` at a time, until there are none."""
    while rows := cursor.fetchmany(batch_size):
        yield rows


def prefetched_batches(cursor: Any, batch_size: int) -> Iterator[list[Any]]:
    """fetch_batches, with the next batch fetched by a thread of its own while the caller works on this one: the
    server produces rows while the process encodes them, instead of each waiting for the other (a named cursor
    fetches each batch in a round trip). The thread alone uses ``cursor`` (a driver's cursor, whose connection
    may be used from any thread, never Django's) until it has ended, which it has when this generator
    finishes, is closed or raises: at most two batches are held."""
    handoff: queue.Queue[tuple[list[Any] | None, BaseException | None]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                rows = cursor.fetchmany(batch_size)
                handoff.put((rows or None, None))
                if not rows:
                    return
        except BaseException as exc:  # handed over, raised in the caller's thread
            handoff.put((None, exc))

    worker = threading.Thread(target=fetch, name="adcp-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            rows, error = handoff.get()
            if error is not None:
                raise error
            if rows is None:
                return
            yield rows
    finally:
        stop.set()
        with suppress(queue.Empty):  # room for the one batch the thread may still hand over; then it sees the stop
            handoff.get_nowait()
        worker.join()


class Engine:
    """One database connection seen as a backup source and a restore target."""

    vendor = "base"
    supports_fts = False

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.alias = connection.alias

    # -- names ----------------------------------------------------------------------------------
    def quote(self, name: str) -> str:
        return self.connection.ops.quote_name(name)

    def column_list(self, columns: Sequence[str]) -> str:
        return ", ".join(self.quote(c) for c in columns)

    # -- schema ----------------------------------------------------------------------------------
    def existing_tables(self) -> set[str]:
        with self.connection.cursor() as cursor:
            return set(self.connection.introspection.table_names(cursor))

    def describe(self, table: str) -> list[LiveColumn]:
        raise NotImplementedError

    def describe_all(self, tables: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        return {t: [c.as_dict() for c in self.describe(t)] for t in tables}

    def capture_ddl(self, tables: Sequence[str]) -> list[str]:
        """The statements that recreate these tables (and their indexes, triggers, FTS) on this engine."""
        return []

    def create_schema(self, statements: Sequence[str]) -> None:
        with self.connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    def drop_tables(self, tables: Sequence[str]) -> None:
        """Drop these tables (given parents first): undoes a schema created outside the restore transaction."""
        with self.connection.cursor() as cursor:
            for table in reversed(tables):
                cursor.execute(f"DROP TABLE IF EXISTS {self.quote(table)}")

    # -- reading -----------------------------------------------------------------------------------
    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees the database as of one moment."""
        if self.connection.in_atomic_block:  # an outer transaction already fixes what we see
            with transaction.atomic(using=self.alias):
                yield
            return
        with transaction.atomic(using=self.alias):
            self.begin_snapshot()
            yield

    def begin_snapshot(self) -> None:
        """What makes a new transaction a read-only snapshot on this engine (SQLite: nothing more)."""

    def count(self, table: str, where: str = "", params: Sequence[Any] = ()) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {self.quote(table)} {where}", params)
            return int(cursor.fetchone()[0])

    def select_list(self, spec: TableSpec, columns: Sequence[str]) -> str:
        return self.column_list(columns)

    def read_rows(self, spec: TableSpec, columns: Sequence[str], *, batch_size: int,
                  where: str = "", params: Sequence[Any] = ()) -> Iterator[list[Sequence[Any]]]:
        sql = (f"SELECT {self.select_list(spec, columns)} FROM {self.quote(spec.name)} {where} "
               f"ORDER BY {self.quote(spec.primary_key)}")
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            yield from fetch_batches(cursor, batch_size)

    def has_rows(self, table: str) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {self.quote(table)} LIMIT 1")
            return cursor.fetchone() is not None

    def get_sequence(self, table: str) -> int | None:
        return None

    # -- what the target's columns take -------------------------------------------------------------
    def declared_types(self, table: str) -> dict[str, str]:
        """column -> SQL type as the live table declares it (sizes included): what limits a value."""
        return {}

    def max_row_bytes(self) -> int | None:
        """The largest row one INSERT may carry, where the engine has such a limit."""
        return None

    def value_limits(self, table: str, columns: Sequence[str]) -> ValueLimits | None:
        """The checks of ``columns`` of ``table`` against what this database's live columns can store."""
        found = ValueLimits(self.vendor, table, columns, self.declared_types(table),
                            max_row_bytes=self.max_row_bytes())
        return found or None

    # -- scratch databases, for restore drills ---------------------------------------------------
    scratch_schemas = False  # whether a scratch may be a schema of the live database instead (PostgreSQL)

    def create_database(self, name: str, *, schema: bool = False) -> None:
        """Create the empty scratch database ``name`` (with ``schema``, a schema of this database) on this
        connection's server; a DatabaseError says why not (see ``lacks_privilege``)."""
        raise NotImplementedError(f"{self.vendor} keeps its scratch databases in files")

    def drop_database(self, name: str, *, schema: bool = False) -> None:
        """Drop the scratch database (or schema) ``name`` if it exists, whoever is connected to it."""
        raise NotImplementedError(f"{self.vendor} keeps its scratch databases in files")

    def databases_named(self, prefix: str) -> list[tuple[str, str]]:
        """The databases and schemas whose names start with ``prefix``, as (``database`` or ``schema``, name)."""
        raise NotImplementedError(f"{self.vendor} keeps its scratch databases in files")

    def lacks_privilege(self, exc: DatabaseError) -> bool:
        """Whether ``exc`` is the server refusing the user a privilege."""
        return False

    def scratch_privilege_hint(self, user: str, database: str, prefix: str) -> str:
        """What the user must be granted to create and drop scratch databases, in the server's own words."""
        return ""

    # -- a lock for every machine ----------------------------------------------------------------
    shares_lock = False  # SQLite is a file of one machine: the lock file there covers every process

    def try_lock(self, name: str) -> bool:
        """Take the session lock ``name`` without waiting, on this engine's connection (a session of its own);
        False while another session holds it. Only engines whose ``shares_lock`` is true have one."""
        raise NotImplementedError(f"{self.vendor} has no session lock")

    def unlock(self, name: str) -> None:
        """Release the session lock ``name`` taken by ``try_lock``."""
        raise NotImplementedError(f"{self.vendor} has no session lock")

    def _fetch_one(self, sql: str, params: Sequence[Any]) -> Any:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return row[0] if row else None

    # -- writing -----------------------------------------------------------------------------------
    def drop_temporary_sql(self, name: str) -> str:
        """The statement dropping a temporary table without ending the transaction around it."""
        return f"DROP TABLE IF EXISTS {self.quote(name)}"

    @contextmanager
    def restore_transaction(self) -> Iterator[None]:
        with transaction.atomic(using=self.alias):
            yield

    def delete_rows(self, table: str, where: str = "", params: Sequence[Any] = ()) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {self.quote(table)} {where}", params)
            deleted: int = cursor.rowcount  # DB-API: an int; Django's cursor wrapper passes it through untyped
            return deleted

    def empty_tables(self, tables: Sequence[str]) -> None:
        """Delete every row of these tables, given children first, inside the restore transaction."""
        for table in tables:
            self.delete_rows(table)

    def adapt_rows(self, spec: TableSpec, columns: Sequence[str], families: Sequence[str],
                   rows: list[list[Any]], source_vendor: str | None = None) -> list[list[Any]]:
        """Values from any engine's backup, made fit for this engine's columns."""
        return rows

    def insert_rows(self, spec: TableSpec, columns: Sequence[str], rows: list[list[Any]]) -> None:
        placeholders = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {self.quote(spec.name)} ({self.column_list(columns)}) VALUES ({placeholders})"
        with self.connection.cursor() as cursor:
            cursor.executemany(sql, rows)

    def reset_sequence(self, spec: TableSpec, minimum: int | None, *, lower_after_commit: bool = False) -> None:
        """After explicit ids: the next generated id is above every restored one (and ``minimum``).

        Whatever happens to the transaction after this, no sequence may end below the largest id of its table;
        ``lower_after_commit``: a counter above that may come down to ``minimum``, once the restore committed."""

    # -- the dry-run report --------------------------------------------------------------------------
    def before_table(self, spec: TableSpec) -> str:
        return f"adcp_before_{spec.name}"

    def snapshot_rows(self, spec: TableSpec, columns: Sequence[str], where: str = "",
                      params: Sequence[Any] = ()) -> None:
        """Copy the rows a restore replaces into a temporary table keyed by the primary key, for diff_rows."""
        temp = self.before_table(spec)
        with self.connection.cursor() as cursor:
            cursor.execute(self.drop_temporary_sql(temp))
            for number, statement in enumerate(self.before_table_sql(spec, columns, where)):
                cursor.execute(statement, params if number == 0 else ())

    def before_table_sql(self, spec: TableSpec, columns: Sequence[str], where: str) -> list[str]:
        temp = self.quote(self.before_table(spec))
        return [f"CREATE TEMPORARY TABLE {temp} AS SELECT {self.column_list(columns)} "
                f"FROM {self.quote(spec.name)} {where}",
                f"CREATE UNIQUE INDEX {self.quote(self.before_table(spec) + '_key')} "
                f"ON {temp} ({self.quote(spec.primary_key)})"]

    def same_value(self, left: str, right: str) -> str:
        """SQL true when two values are equal or both NULL."""
        return f"{left} IS NOT DISTINCT FROM {right}"

    def diff_rows(self, spec: TableSpec, columns: Sequence[str], where: str = "",
                  params: Sequence[Any] = ()) -> tuple[int, int, int]:
        """Rows added, removed and changed since snapshot_rows, each count one index-backed join; drops the copy."""
        table, temp = self.quote(spec.name), self.quote(self.before_table(spec))
        pk = self.quote(spec.primary_key)
        scoped = f"{where} AND" if where else "WHERE"
        differs = " OR ".join(f"NOT ({self.same_value(f'n.{self.quote(c)}', f'o.{self.quote(c)}')})"
                              for c in columns if c != spec.primary_key) or "1 = 0"
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table} n {scoped} "
                           f"NOT EXISTS (SELECT 1 FROM {temp} o WHERE o.{pk} = n.{pk})", params)
            added = int(cursor.fetchone()[0])
            cursor.execute(f"SELECT COUNT(*) FROM {temp} o "
                           f"WHERE NOT EXISTS (SELECT 1 FROM {table} n WHERE n.{pk} = o.{pk})")
            removed = int(cursor.fetchone()[0])
            cursor.execute(f"SELECT COUNT(*) FROM {table} n JOIN {temp} o ON o.{pk} = n.{pk} WHERE {differs}")
            changed = int(cursor.fetchone()[0])
            cursor.execute(self.drop_temporary_sql(self.before_table(spec)))
        return added, removed, changed

    def check_foreign_keys(self, tables: Sequence[TableSpec]) -> list[Problem]:
        problems: list[Problem] = []
        with self.connection.cursor() as cursor:
            for spec in tables:
                for fk in spec.foreign_keys:
                    cursor.execute(
                        f"SELECT c.{self.quote(spec.primary_key)}, c.{self.quote(fk.column)} "
                        f"FROM {self.quote(spec.name)} c LEFT JOIN {self.quote(fk.table)} p "
                        f"ON p.{self.quote(fk.ref_column)} = c.{self.quote(fk.column)} "
                        f"WHERE p.{self.quote(fk.ref_column)} IS NULL AND c.{self.quote(fk.column)} IS NOT NULL "
                        f"ORDER BY 1 LIMIT 20"
                    )
                    for pk, ref in cursor.fetchall():
                        problems.append(Problem(spec.name, f"id {pk}: {fk.column} {ref} has no row in {fk.table}"))
        return problems

    # -- full-text index (SQLite only) ---------------------------------------------------------------
    def fts_present(self) -> bool:
        return False

    def fts_suspend(self) -> list[str]:
        return []

    def fts_resume(self, triggers: Sequence[str]) -> None:
        pass

    def fts_rebuild(self) -> None:
        pass

    def fts_check(self) -> list[Problem]:
        return []


__all__ = ["Engine", "LiveColumn", "family_of", "fingerprint", "shipped_ddl", "split_sql",
           "INTEGER", "FLOAT", "TEXT", "BOOLEAN", "DATETIME", "BLOB"]
