"""Row checks shared by validate and restore, and a disk-backed key index for unique and foreign keys."""
from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

from . import dataset
from .dataset import BLOB, BOOLEAN, DATETIME, FLOAT, INTEGER, TEXT, TableSpec
from .exceptions import Problem

_ALLOWED: dict[str, tuple[type, ...]] = {
    INTEGER: (int,),
    FLOAT: (float, int),
    TEXT: (str,),
    BOOLEAN: (bool, int),
    DATETIME: (str,),
    BLOB: (bytes,),
}
_EXPECTED = {INTEGER: "an integer", FLOAT: "a number", TEXT: "text", BOOLEAN: "a boolean",
             DATETIME: "a date and time", BLOB: "binary data"}

RowRule = Callable[[Sequence[Any]], "str | None"]


def _embedding_length(columns: Sequence[str]) -> RowRule | None:
    """An embedding is ``dim`` float32 values: exactly 4 * dim bytes."""
    if "embedding" not in columns or "dim" not in columns:
        return None
    blob_at, dim_at = list(columns).index("embedding"), list(columns).index("dim")

    def check(row: Sequence[Any]) -> str | None:
        blob, dim = row[blob_at], row[dim_at]
        if type(blob) is bytes and type(dim) is int and len(blob) != 4 * dim:
            return f"embedding holds {len(blob)} bytes, but dim {dim} needs {4 * dim}"
        return None

    return check


# Checks across the columns of one row, by table: each factory returns a rule, or None when the columns lack it.
ROW_RULES: dict[str, tuple[Callable[[Sequence[str]], RowRule | None], ...]] = {
    "product_embeddings": (_embedding_length,),
}


class RowChecker:
    """Checks each row's values against the registry: type family and NOT NULL."""

    def __init__(self, spec: TableSpec | None, columns: Sequence[str], families: Sequence[str]) -> None:
        self.table = spec.name if spec else "?"
        self.checks: list[tuple[int, str, frozenset[type], str]] = []
        for i, (name, family) in enumerate(zip(columns, families)):
            declared = None
            if spec is not None:
                try:
                    declared = spec.column(name)
                except KeyError:
                    declared = None
            nullable = declared.nullable if declared is not None else True
            family = declared.family if declared is not None else family
            allowed = set(_ALLOWED.get(family, (object,)))
            if nullable:
                allowed.add(type(None))
            self.checks.append((i, name, frozenset(allowed), family))
        rules = (factory(columns) for factory in ROW_RULES.get(self.table, ()))
        self.rules: list[RowRule] = [rule for rule in rules if rule is not None]

    def check(self, rows: list[list[Any]], first_row: int) -> list[Problem]:
        problems: list[Problem] = []
        for i, name, allowed, family in self.checks:
            kinds = set(map(type, map(itemgetter(i), rows)))  # C-level: most batches need no closer look
            if kinds <= allowed and not (family == BOOLEAN and int in kinds):
                continue
            bad = [k for k, row in enumerate(rows) if type(row[i]) not in allowed]
            for k in bad[:20]:
                value = rows[k][i]
                if value is None:
                    message = f"{name} is NULL but the column is NOT NULL"
                else:
                    message = f"{name} should be {_EXPECTED.get(family, family)}, not {type(value).__name__}"
                problems.append(Problem(self.table, message, first_row + k))
            if family == BOOLEAN:
                for k, row in enumerate(rows):
                    v = row[i]
                    if type(v) is int and v not in (0, 1):
                        problems.append(Problem(self.table, f"{name} should be 0 or 1, not {v}", first_row + k))
        for rule in self.rules:
            for k, row in enumerate(rows):
                broken = rule(row)
                if broken is not None:
                    problems.append(Problem(self.table, broken, first_row + k))
        return problems


class KeyIndex:
    """Primary, unique and foreign keys of every row seen, kept in a scratch SQLite file, not in memory."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="adcp-backup-keys-")
        self._db = sqlite3.connect(Path(self._dir.name) / "keys.sqlite3")
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._tables: dict[str, tuple[list[str], list[int]]] = {}

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def __enter__(self) -> KeyIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _key_columns(self, spec: TableSpec) -> list[str]:
        names = [spec.primary_key]
        for key in spec.unique:
            names.extend(c for c in key if c not in names)
        for fk in spec.foreign_keys:
            if fk.column not in names:
                names.append(fk.column)
        return names

    def start_table(self, spec: TableSpec, columns: Sequence[str]) -> None:
        key_columns = [c for c in self._key_columns(spec) if c in columns]
        positions = [list(columns).index(c) for c in key_columns]
        self._tables[spec.name] = (key_columns, positions)
        cols = ", ".join(f'"{c}"' for c in ["_row", *key_columns])
        self._db.execute(f'CREATE TABLE IF NOT EXISTS "k_{spec.name}" ({cols})')

    def add(self, table: str, rows: list[list[Any]], first_row: int) -> None:
        if table not in self._tables:
            return
        key_columns, positions = self._tables[table]
        marks = ", ".join(["?"] * (len(key_columns) + 1))
        self._db.executemany(
            f'INSERT INTO "k_{table}" VALUES ({marks})',
            ([first_row + k, *(row[p] for p in positions)] for k, row in enumerate(rows)),
        )

    def problems(self, limit: int = 100) -> list[Problem]:
        problems: list[Problem] = []
        for spec in dataset.tables():
            if spec.name not in self._tables:
                continue
            key_columns, _ = self._tables[spec.name]
            keys = [(spec.primary_key,), *spec.unique]
            for key in keys:
                if not all(c in key_columns for c in key):
                    continue
                cols = ", ".join(f'"{c}"' for c in key)
                not_null = " AND ".join(f'"{c}" IS NOT NULL' for c in key)
                rows = self._db.execute(
                    f'SELECT MIN(_row), MAX(_row), {cols} FROM "k_{spec.name}" WHERE {not_null} '
                    f"GROUP BY {cols} HAVING COUNT(*) > 1 ORDER BY 1 LIMIT ?", (limit,)
                ).fetchall()
                for first, last, *values in rows:
                    shown = ", ".join(f"{c}={v!r}" for c, v in zip(key, values))
                    problems.append(Problem(spec.name, f"duplicate key ({shown}), first at row {first}", last))
            for fk in spec.foreign_keys:
                if fk.column not in key_columns:
                    continue
                if fk.table not in self._tables:
                    continue
                self._db.execute(
                    f'CREATE INDEX IF NOT EXISTS "i_{fk.table}_{fk.ref_column}" ON "k_{fk.table}" ("{fk.ref_column}")'
                )
                rows = self._db.execute(
                    f'SELECT c._row, c."{fk.column}" FROM "k_{spec.name}" c LEFT JOIN "k_{fk.table}" p '
                    f'ON p."{fk.ref_column}" = c."{fk.column}" WHERE p._row IS NULL AND c."{fk.column}" IS NOT NULL '
                    f"ORDER BY 1 LIMIT ?", (limit,)
                ).fetchall()
                for row_number, value in rows:
                    problems.append(
                        Problem(spec.name, f"{fk.column} {value!r} has no row in {fk.table}", row_number)
                    )
        return problems
