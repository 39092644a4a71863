"""SQLite: reads values exactly as stored, bulk inserts through the driver, keeps the FTS5 index right."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, transaction

from .. import dataset
from ..dataset import DATETIME, TableSpec
from ..exceptions import Problem
from .base import Engine, LiveColumn, family_of, fetch_batches

DELETE_SLICE = 20_000
FTS_REPOPULATE = (
    "INSERT INTO products_fts(rowid, product_id, name, description) SELECT id, id, name, description FROM product"
)


class SQLiteEngine(Engine):
    vendor = "sqlite"
    supports_fts = True

    def _raw(self) -> sqlite3.Connection:
        """The driver's own connection under Django's (opened if need be)."""
        self.connection.ensure_connection()
        raw: sqlite3.Connection = self.connection.connection
        return raw

    def describe(self, table: str) -> list[LiveColumn]:
        rows = self._raw().execute(f"PRAGMA table_info({self.quote(table)})").fetchall()
        return [
            LiveColumn(name=name, family=family_of(declared or ""), nullable=not notnull and not pk)
            for _cid, name, declared, notnull, _default, pk in rows
        ]

    def declared_types(self, table: str) -> dict[str, str]:
        rows = self._raw().execute(f"PRAGMA table_info({self.quote(table)})").fetchall()
        return {name: declared or "" for _cid, name, declared, _notnull, _default, _pk in rows}

    def existing_tables(self) -> set[str]:
        rows = self._raw().execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {r[0] for r in rows}

    def capture_ddl(self, tables: Sequence[str]) -> list[str]:
        rows = self._raw().execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
        wanted = set(tables)
        by_kind: dict[str, list[tuple[str, str, str]]] = {"table": [], "index": [], "fts": [], "trigger": []}
        for kind, name, tbl_name, sql in rows:
            if name == dataset.FTS_TABLE:
                by_kind["fts"].append((name, tbl_name, sql))
            elif tbl_name in wanted and kind in by_kind:
                by_kind[kind].append((name, tbl_name, sql))
        order = {t: i for i, t in enumerate(tables)}
        tables_sql = sorted(by_kind["table"], key=lambda r: order.get(r[1], 99))
        index_sql = sorted(by_kind["index"], key=lambda r: (order.get(r[1], 99), r[0]))
        trigger_sql = sorted(by_kind["trigger"], key=lambda r: r[0])
        return [r[2] for r in (*tables_sql, *index_sql, *by_kind["fts"], *trigger_sql)]

    def create_schema(self, statements: Sequence[str]) -> None:
        raw = self._raw()
        for statement in statements:
            raw.execute(statement)

    def select_list(self, spec: TableSpec, columns: Sequence[str]) -> str:
        # "+column" is SQLite's no-op operator: the value stays as stored, but the result has no declared
        # type, so the driver's datetime and bool converters (which Django registers) leave it alone.
        return ", ".join(f"+{self.quote(c)}" for c in columns)

    def read_rows(self, spec: TableSpec, columns: Sequence[str], *, batch_size: int,
                  where: str = "", params: Sequence[Any] = ()) -> Iterator[list[Sequence[Any]]]:
        sql = (f"SELECT {self.select_list(spec, columns)} FROM {self.quote(spec.name)} {where} "
               f"ORDER BY {self.quote(spec.primary_key)}").replace("%s", "?")
        cursor = self._raw().cursor()
        try:
            cursor.execute(sql, tuple(params))
            yield from fetch_batches(cursor, batch_size)
        finally:
            cursor.close()

    def count(self, table: str, where: str = "", params: Sequence[Any] = ()) -> int:
        sql = f"SELECT COUNT(*) FROM {self.quote(table)} {where}".replace("%s", "?")
        return int(self._raw().execute(sql, tuple(params)).fetchone()[0])

    def get_sequence(self, table: str) -> int | None:
        raw = self._raw()
        if not raw.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
            return None
        row = raw.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        return None if row is None else int(row[0])

    @contextmanager
    def restore_transaction(self) -> Iterator[None]:
        # BEGIN IMMEDIATE: the write lock from the start. A transaction that reads first (the counts) and
        # writes later fails at once in WAL mode if anyone wrote in between (a job's heartbeat, a session).
        connection: Any = self.connection
        previous = connection.transaction_mode
        connection.transaction_mode = "IMMEDIATE"
        try:
            with transaction.atomic(using=self.alias):
                connection.transaction_mode = previous
                # Foreign keys are checked once, before commit, and reported row by row.
                self._raw().execute("PRAGMA defer_foreign_keys = ON")
                yield
        finally:
            connection.transaction_mode = previous

    def delete_rows(self, table: str, where: str = "", params: Sequence[Any] = ()) -> int:
        # With foreign keys or triggers SQLite first collects every rowid to delete in memory (about 20 MB
        # a million rows); deleting in slices keeps memory flat. Each slice starts where the last one ended.
        condition = where.strip()
        if condition.upper().startswith("WHERE"):
            condition = condition[5:]
        inner = f"SELECT rowid FROM {self.quote(table)}" + (f" WHERE {condition}" if condition else "")
        sql = f"DELETE FROM {self.quote(table)} WHERE rowid IN ({inner} LIMIT {DELETE_SLICE})".replace("%s", "?")
        raw = self._raw()
        deleted = 0
        while True:
            count = raw.execute(sql, tuple(params)).rowcount
            deleted += count
            if count < DELETE_SLICE:
                return deleted

    def adapt_rows(self, spec: TableSpec, columns: Sequence[str], families: Sequence[str],
                   rows: list[list[Any]], source_vendor: str | None = None) -> list[list[Any]]:
        if source_vendor in (None, "sqlite"):
            return rows
        # Other engines give ISO datetimes; the AdCP application stores them with a space on SQLite.
        datetime_idx = [i for i, f in enumerate(families) if f == DATETIME]
        for row in rows:
            for i in datetime_idx:
                v = row[i]
                if type(v) is str and len(v) > 10 and v[10] == "T":
                    row[i] = v[:10] + " " + v[11:]
        return rows

    def insert_rows(self, spec: TableSpec, columns: Sequence[str], rows: list[list[Any]]) -> None:
        placeholders = ", ".join(["?"] * len(columns))
        sql = f"INSERT INTO {self.quote(spec.name)} ({self.column_list(columns)}) VALUES ({placeholders})"
        self._raw().executemany(sql, rows)

    def same_value(self, left: str, right: str) -> str:
        return f"{left} IS {right}"

    def reset_sequence(self, spec: TableSpec, minimum: int | None, *, lower_after_commit: bool = False) -> None:
        # sqlite_sequence is an ordinary table: it rolls back with the restore, so it is set exactly.
        raw = self._raw()
        if not raw.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
            return
        if not raw.execute("SELECT 1 FROM sqlite_sequence WHERE name = ?", (spec.name,)).fetchone():
            table_sql = raw.execute("SELECT sql FROM sqlite_master WHERE name = ?", (spec.name,)).fetchone()
            if not table_sql or "AUTOINCREMENT" not in (table_sql[0] or "").upper():
                return
            raw.execute("INSERT INTO sqlite_sequence(name, seq) VALUES (?, 0)", (spec.name,))
        top_sql = f"SELECT COALESCE(MAX({self.quote(spec.primary_key)}), 0) FROM {self.quote(spec.name)}"
        top = raw.execute(top_sql).fetchone()[0]
        raw.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (max(int(top), minimum or 0), spec.name))

    def check_foreign_keys(self, tables: Sequence[TableSpec]) -> list[Problem]:
        problems: list[Problem] = []
        raw = self._raw()
        for spec in tables:
            violations = raw.execute(f"PRAGMA foreign_key_check({self.quote(spec.name)})").fetchall()
            for _table, rowid, parent, fkid in violations[:20]:
                fks = raw.execute(f"PRAGMA foreign_key_list({self.quote(spec.name)})").fetchall()
                column = next((fk[3] for fk in fks if fk[0] == fkid), "?")
                value = raw.execute(
                    f"SELECT {self.quote(column)} FROM {self.quote(spec.name)} WHERE rowid = ?", (rowid,)
                ).fetchone() if column != "?" else None
                problems.append(
                    Problem(spec.name, f"id {rowid}: {column} {value[0] if value else '?'} has no row in {parent}")
                )
        return problems

    # -- full-text index ------------------------------------------------------------------------------
    def fts_present(self) -> bool:
        return bool(
            self._raw().execute("SELECT 1 FROM sqlite_master WHERE name = ?", (dataset.FTS_TABLE,)).fetchone()
        )

    def fts_suspend(self) -> list[str]:
        """Drops the triggers that feed the index and empties it; returns the triggers' DDL."""
        raw = self._raw()
        rows = raw.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND sql LIKE ?",
            (dataset.FTS_SOURCE_TABLE, f"%{dataset.FTS_TABLE}%"),
        ).fetchall()
        for name, _sql in rows:
            raw.execute(f"DROP TRIGGER {self.quote(name)}")
        raw.execute(f"INSERT INTO {dataset.FTS_TABLE}({dataset.FTS_TABLE}) VALUES('delete-all')")
        return [sql for _name, sql in rows]

    def fts_rebuild(self) -> None:
        self._raw().execute(FTS_REPOPULATE)

    def fts_resume(self, triggers: Sequence[str]) -> None:
        raw = self._raw()
        for sql in triggers:
            raw.execute(sql)

    def fts_check(self) -> list[Problem]:
        try:
            self._raw().execute(f"INSERT INTO {dataset.FTS_TABLE}({dataset.FTS_TABLE}) VALUES('integrity-check')")
        except DatabaseError as exc:
            return [Problem(dataset.FTS_TABLE, f"the full-text index failed its integrity check: {exc}")]
        except Exception as exc:  # sqlite3.DatabaseError from the raw connection
            if type(exc).__module__ == "sqlite3":
                return [Problem(dataset.FTS_TABLE, f"the full-text index failed its integrity check: {exc}")]
            raise
        return []
