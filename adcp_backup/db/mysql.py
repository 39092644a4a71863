"""MariaDB/MySQL: a consistent-snapshot transaction, unbuffered streaming reads, batched multi-row inserts."""
from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import transaction

from ..dataset import BLOB, BOOLEAN, DATETIME, TableSpec
from .base import Engine, LiveColumn, family_of, fetch_batches

_AUTO_INCREMENT_OPTION = re.compile(r"\s+AUTO_INCREMENT=\d+")


class MySQLEngine(Engine):
    vendor = "mysql"

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
        placeholders = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {self.quote(spec.name)} ({self.column_list(columns)}) VALUES ({placeholders})"
        cursor = self._raw().cursor()
        try:
            cursor.executemany(sql, rows)  # the driver sends multi-row INSERTs of up to about 1 MB each
        finally:
            cursor.close()

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
