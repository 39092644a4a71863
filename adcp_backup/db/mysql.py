"""MariaDB/MySQL: a consistent-snapshot transaction, unbuffered streaming reads, batched multi-row inserts."""
from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, transaction

from ..dataset import BLOB, BOOLEAN, DATETIME, TableSpec
from .base import Engine, LiveColumn, family_of, fetch_batches, like_prefix

_AUTO_INCREMENT_OPTION = re.compile(r"\s+AUTO_INCREMENT=\d+")


STATEMENT_BYTES = 1 << 20  # well below the default max_allowed_packet of 16 MiB
# What a single-quoted literal under backslash escapes cannot hold as it is: the quote and the backslash, and, as
# mysql_real_escape_string does, NUL, CR, LF and Ctrl-Z. A double quote needs nothing inside single quotes, and
# leaving it as it is spares escaping most JSON text (formats, targeting), a third of a product's values.
_SPECIAL = re.compile("[\\0\\\\\\n\\r\\x1a']")


def _escaped(value: str) -> str:
    """The text of a string literal under backslash escapes (the backslash first, then the rest)."""
    return (value.replace("\\", "\\\\").replace("\0", "\\0").replace("\n", "\\n").replace("\r", "\\r")
            .replace("\x1a", "\\Z").replace("'", "\\'"))


def _float_literal(value: float) -> str:
    text = repr(value)
    if text in ("inf", "-inf", "nan"):  # the value checks refuse these before any insert; never send them
        raise ValueError(f"{text} cannot be stored in MariaDB")
    return text if "e" in text else text + "e0"  # an exponent makes it a DOUBLE literal, not an exact DECIMAL


def _literal_writer(backslash_escapes: bool) -> Callable[[Any], str]:
    """A function from one value to its SQL literal, by the value's type."""
    if backslash_escapes:
        def text(value: str) -> str:
            return "'" + (_escaped(value) if _SPECIAL.search(value) else value) + "'"
    else:
        def text(value: str) -> str:
            return "'" + value.replace("'", "''") + "'"

    by_type: dict[type, Callable[[Any], str]] = {
        int: int.__repr__,
        bool: lambda value: "1" if value else "0",
        float: _float_literal,
        str: text,
        bytes: lambda value: "X'" + value.hex() + "'",
        bytearray: lambda value: "X'" + value.hex() + "'",
        memoryview: lambda value: "X'" + value.hex() + "'",
        type(None): lambda value: "NULL",
        datetime: lambda value: "'" + value.replace(tzinfo=None).isoformat(" ") + "'",
        date: lambda value: "'" + value.isoformat() + "'",
        Decimal: lambda value: str(value),
    }

    def literal(value: Any) -> str:
        return by_type[type(value)](value)

    return literal


def _statements(head: str, rows: Sequence[Sequence[Any]], literal: Any, limit: int) -> Iterator[str]:
    """``head`` followed by as many "(v, ...)" row tuples as fit in ``limit`` bytes (at least one per statement)."""
    parts: list[str] = []
    size = len(head)
    for row in rows:
        values = "(" + ",".join(map(literal, row)) + ")"
        if parts and size + len(values) > limit:
            yield head + ",".join(parts)
            parts, size = [], len(head)
        parts.append(values)
        size += len(values) + 1
    if parts:
        yield head + ",".join(parts)


def _iso_datetime(text: str) -> str:
    """MariaDB's DATETIME text as the ISO text a datetime's isoformat() gives (no ".000000")."""
    if len(text) < 19:
        return text
    return text[:10] + "T" + (text[11:19] if text.endswith(".000000") else text[11:])


@contextmanager
def _datetimes_as_iso_text(raw: Any) -> Iterator[None]:
    """For one query, the driver hands DATETIME values over as ISO text, which is what the file holds, instead of
    building datetime objects to format them again: PyMySQL's ``decoders`` and mysqlclient's ``converter`` map a
    field type to its conversion (in mysqlclient the datetime one is Python code: a third of a backup's time).
    Another driver: unchanged."""
    attribute = next((name for name in ("decoders", "converter") if isinstance(getattr(raw, name, None), dict)),
                     None)
    if attribute is None:
        yield
        return
    conversions = getattr(raw, attribute)
    field_type = importlib.import_module(type(raw).__module__.rsplit(".", 1)[0] + ".constants.FIELD_TYPE")
    setattr(raw, attribute, {**conversions, field_type.DATETIME: _iso_datetime})
    try:
        yield
    finally:
        setattr(raw, attribute, conversions)


class _Sender:
    """Sends a restore's INSERT statements on the driver's connection from one thread of its own, so that the
    server stores one batch while the process decodes, checks and writes out the next (the process and the server
    took turns before: each waited for the other). One batch is in flight at a time; ``wait`` returns once it is
    stored and raises its error, if any. Nothing else may use the connection until then: the engine makes every
    other statement wait (an execute wrapper), and closes the sender before the transaction ends."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adcp-mysql-insert")
        self._pending: Future[None] | None = None

    def send(self, statements: list[str]) -> None:
        self.wait()
        self._pending = self._pool.submit(self._execute, statements)

    def _execute(self, statements: list[str]) -> None:
        cursor = self._raw.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.close()

    def wait(self) -> None:
        pending = self._pending
        if pending is not None:
            try:
                pending.result()
            finally:
                self._pending = None

    def close(self, *, check: bool) -> None:
        """Wait for the batch in flight whatever happens (the thread is joined), and raise its error when
        ``check``; without it another error is already on its way and this one would only hide it."""
        self._pool.shutdown(wait=True)
        if check:
            self.wait()


def _plain(word: Any) -> bool:
    """A character set or collation name fit to be spelled into CREATE DATABASE."""
    return isinstance(word, str) and re.fullmatch(r"[A-Za-z0-9_]{1,64}", word) is not None


def lock_name(name: str) -> str:
    """GET_LOCK names are server-wide and at most 64 characters."""
    return name[:64]


class MySQLEngine(Engine):
    vendor = "mysql"

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        self._escapes: bool | None = None
        self._sender: _Sender | None = None

    def _raw(self) -> Any:
        self.connection.ensure_connection()
        return self.connection.connection

    # -- schema ----------------------------------------------------------------------------------
    def describe(self, table: str) -> list[LiveColumn]:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", [table])
            return [LiveColumn(name=name, family=family_of(declared), nullable=nullable == "YES")
                    for name, declared, nullable in cursor.fetchall()]

    def declared_types(self, table: str) -> dict[str, str]:
        """The live COLUMN_TYPEs (varchar(100), longtext, int(11), double, datetime(6)...): a database made from
        the AdCP application's own DDL has narrower columns than the schema this app ships."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                           "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", [table])
            return {name: declared for name, declared in cursor.fetchall()}

    def max_row_bytes(self) -> int | None:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT @@max_allowed_packet")
            return int(cursor.fetchone()[0])

    def capture_ddl(self, tables: Sequence[str]) -> list[str]:
        """SHOW CREATE TABLE of each table, parents first, without the current AUTO_INCREMENT counter."""
        statements = []
        with self.connection.cursor() as cursor:
            for table in tables:
                cursor.execute(f"SHOW CREATE TABLE {self.quote(table)}")
                statements.append(_AUTO_INCREMENT_OPTION.sub("", cursor.fetchone()[1]))
        return statements

    # -- reading -----------------------------------------------------------------------------------
    def begin_snapshot(self) -> None:
        with self.connection.cursor() as cursor:
            # Django opens MySQL sessions in READ COMMITTED; a snapshot needs REPEATABLE READ.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")

    def read_rows(self, spec: TableSpec, columns: Sequence[str], *, batch_size: int,
                  where: str = "", params: Sequence[Any] = ()) -> Iterator[list[Sequence[Any]]]:
        sql = (f"SELECT {self.column_list(columns)} FROM {self.quote(spec.name)} {where} "
               f"ORDER BY {self.quote(spec.primary_key)}")
        bool_idx = [i for i, c in enumerate(columns) if _family(spec, c) == BOOLEAN]
        raw = self._raw()
        cursors = importlib.import_module(type(raw).__module__.rsplit(".", 1)[0] + ".cursors")
        cursor = raw.cursor(cursors.SSCursor)  # unbuffered: rows arrive as they are fetched
        try:
            with _datetimes_as_iso_text(raw):
                cursor.execute(sql, tuple(params) or None)
            for rows in fetch_batches(cursor, batch_size):
                if bool_idx:  # BOOL is TINYINT(1): give the file true/false like every other engine
                    rows = [list(r) for r in rows]
                    for row in rows:
                        for i in bool_idx:
                            if row[i] is not None:
                                row[i] = bool(row[i])
                yield rows
        finally:
            cursor.close()

    def get_sequence(self, table: str) -> int | None:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT AUTO_INCREMENT FROM information_schema.TABLES "
                           "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", [table])
            row = cursor.fetchone()
            return None if not row or row[0] is None else int(row[0]) - 1

    # -- writing -----------------------------------------------------------------------------------
    @contextmanager
    def restore_transaction(self) -> Iterator[None]:
        """The restore's transaction, with InnoDB's row-by-row foreign-key checks off for this session while it
        deletes and inserts (as mysqldump's files do): every restore checks the foreign keys of the tables it
        wrote with one join each before it commits, and rolls back on an orphan."""
        with self.connection.cursor() as cursor:
            cursor.execute("SET SESSION foreign_key_checks = 0")
        try:
            with transaction.atomic(using=self.alias), self._pipelined_inserts():
                yield
        finally:  # after the transaction, which a dry run marks for rollback: no query may run inside it then
            with self.connection.cursor() as cursor:
                cursor.execute("SET SESSION foreign_key_checks = 1")

    @contextmanager
    def _pipelined_inserts(self) -> Iterator[None]:
        """Inside the restore's transaction: inserts go through a _Sender, and every other statement sent through
        Django first waits for the batch in flight. The sender is closed (its batch stored, its thread joined)
        before the transaction commits or rolls back."""
        self._sender = sender = _Sender(self._raw())

        def after_inserts(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
            sender.wait()
            return execute(sql, params, many, context)

        failed = True
        try:
            with self.connection.execute_wrapper(after_inserts):
                yield
            failed = False
        finally:
            self._sender = None
            sender.close(check=not failed)

    # -- scratch databases, for restore drills ---------------------------------------------------
    def create_database(self, name: str, *, schema: bool = False) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
                           "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()")
            row = cursor.fetchone()
            charset = f" CHARACTER SET {row[0]} COLLATE {row[1]}" if row and _plain(row[0]) and _plain(row[1]) \
                else ""
            cursor.execute(f"CREATE DATABASE {self.quote(name)}{charset}")

    def drop_database(self, name: str, *, schema: bool = False) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {self.quote(name)}")

    def databases_named(self, prefix: str) -> list[tuple[str, str]]:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
                           [like_prefix(prefix)])
            return [("database", str(row[0])) for row in cursor.fetchall()]

    def lacks_privilege(self, exc: DatabaseError) -> bool:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        return code in (1044, 1045, 1142, 1227)

    def scratch_privilege_hint(self, user: str, database: str, prefix: str) -> str:
        return (f"the user {user!r} needs CREATE and DROP on databases named {prefix}* (GRANT CREATE, DROP, INDEX, "
                f"ALTER, REFERENCES, INSERT, SELECT, DELETE ON `{like_prefix(prefix)}`.* TO ...)")

    # -- a lock for every machine ----------------------------------------------------------------
    shares_lock = True

    def try_lock(self, name: str) -> bool:
        return bool(self._fetch_one("SELECT GET_LOCK(%s, 0)", [lock_name(name)]) == 1)

    def unlock(self, name: str) -> None:
        self._fetch_one("SELECT RELEASE_LOCK(%s)", [lock_name(name)])

    def drop_temporary_sql(self, name: str) -> str:
        # Plain DROP TABLE commits the transaction on MariaDB, even for a temporary table.
        return f"DROP TEMPORARY TABLE IF EXISTS {self.quote(name)}"

    def adapt_rows(self, spec: TableSpec, columns: Sequence[str], families: Sequence[str],
                   rows: list[list[Any]], source_vendor: str | None = None) -> list[list[Any]]:
        datetime_idx = [i for i, f in enumerate(families) if f == DATETIME]
        blob_idx = [i for i, f in enumerate(families) if f == BLOB]
        for row in rows:
            for i in datetime_idx:
                v = row[i]
                if type(v) is str and len(v) > 10 and v[10] == "T":
                    # ISO text from PostgreSQL; DATETIME takes "YYYY-MM-DD hh:mm:ss[.ffffff]" and no offset.
                    v = v[:10] + " " + v[11:]
                    if v.endswith("+00:00"):
                        v = v[:-6]
                    row[i] = v
            for i in blob_idx:
                if type(row[i]) is str:
                    row[i] = row[i].encode("utf-8")
        return rows

    def insert_rows(self, spec: TableSpec, columns: Sequence[str], rows: list[list[Any]]) -> None:
        """Multi-row INSERTs of up to about 1 MB, their literals written here: a pure-Python driver's own
        per-value escaping took most of a restore's time on the client."""
        head = f"INSERT INTO {self.quote(spec.name)} ({self.column_list(columns)}) VALUES "
        literal = _literal_writer(self._backslash_escapes())
        if self._sender is not None:  # inside a restore: built here, stored while the next batch is being built
            self._sender.send(list(_statements(head, rows, literal, STATEMENT_BYTES)))
            return
        cursor = self._raw().cursor()
        try:
            for statement in _statements(head, rows, literal, STATEMENT_BYTES):
                cursor.execute(statement)
        finally:
            cursor.close()

    def _backslash_escapes(self) -> bool:
        """Whether the session reads backslash escapes in string literals (no NO_BACKSLASH_ESCAPES in sql_mode)."""
        if self._escapes is None:
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT @@SESSION.sql_mode")
                self._escapes = "NO_BACKSLASH_ESCAPES" not in str(cursor.fetchone()[0]).upper()
        return self._escapes

    def before_table_sql(self, spec: TableSpec, columns: Sequence[str], where: str) -> list[str]:
        # CREATE INDEX commits the transaction on MariaDB, even on a temporary table: the key comes with the table.
        return [f"CREATE TEMPORARY TABLE {self.quote(self.before_table(spec))} "
                f"(PRIMARY KEY ({self.quote(spec.primary_key)})) "
                f"SELECT {self.column_list(columns)} FROM {self.quote(spec.name)} {where}"]

    def same_value(self, left: str, right: str) -> str:
        return f"{left} <=> {right}"

    def reset_sequence(self, spec: TableSpec, minimum: int | None, *, lower_after_commit: bool = False) -> None:
        """InnoDB already moves AUTO_INCREMENT above every explicit id inserted, inside the transaction, and
        never below the largest id; it is never lowered here.

        Raising it further to the backup's own counter takes ALTER TABLE, which would commit the restore
        half-way, so it runs only once the restore has committed.
        """
        if not minimum:
            return
        table = self.quote(spec.name)

        def raise_counter() -> None:
            with self.connection.cursor() as cursor:
                cursor.execute(f"SELECT COALESCE(MAX({self.quote(spec.primary_key)}), 0) FROM {table}")
                top = max(int(cursor.fetchone()[0]), minimum)
                cursor.execute(f"ALTER TABLE {table} AUTO_INCREMENT = {int(top) + 1}")

        transaction.on_commit(raise_counter, using=self.alias)


def _family(spec: TableSpec, column: str) -> str | None:
    try:
        return spec.column(column).family
    except KeyError:
        return None
