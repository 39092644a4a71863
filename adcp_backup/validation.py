"""What makes a backup valid, shared by validate and restore: its structure and names, its DDL, each row's
values, and a disk-backed key index for unique and foreign keys."""
from __future__ import annotations

import re
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from functools import cache
from importlib import resources
from operator import itemgetter
from pathlib import Path
from typing import Any, Self

from . import dataset, settings_files, signing
from .conf import backup_settings
from .dataset import BLOB, BOOLEAN, DATETIME, FLOAT, INTEGER, TEXT, TableSpec
from .db import limits
from .db.base import Engine, split_sql
from .exceptions import InvalidBackup, Problem, ProblemLog
from .format.events import BackupReader, Event, FileRecord, RowBatch, TableEnd, TableStart
from .format.reader import NativeReader
from .naming import is_future, parse_time
from .progress import ProgressCallback, ProgressEvent, silent
from .results import ValidationReport

ENGINES = limits.ENGINES  # the engines a backup may come from: those whose limits are known


# -- structure: names, columns, the header's schema and DDL ------------------------------------------------
def spec_or_none(name: Any) -> TableSpec | None:
    """The registry's table of exactly this name (no case folding, no legacy alias), or None."""
    if not isinstance(name, str):
        return None
    try:
        return dataset.table(name)
    except KeyError:
        return None


def _name(value: Any) -> str:
    """A name from a file, fit for a message: repr() escapes quotes and control characters, and it is cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def column_problems(section: str, spec: TableSpec, columns: Sequence[Any], families: Sequence[Any]) -> list[Problem]:
    """A file's columns of a registry table: each one of the registry's, spelled as it spells it, once, of its
    family; and the primary key present."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for name, family in zip(columns, families):
        if not isinstance(name, str) or name not in spec.column_names:
            problems.append(Problem(section, f"unknown column {_name(name)}: {spec.name} has no such column"))
            continue
        if name in seen:
            problems.append(Problem(section, f"the column {name} appears twice"))
        seen.add(name)
        declared = spec.column(name).family
        if family != declared:
            problems.append(Problem(section, f"the column {name} is {_name(family)} in the file, "
                                             f"but {declared} in {spec.name}"))
    if len(columns) != len(families):
        problems.append(Problem(section, "the table's columns and families differ in number"))
    if spec.primary_key not in seen and not problems:
        problems.append(Problem(section, f"the primary key {spec.primary_key} is missing"))
    return problems


def table_problems(start: TableStart) -> list[Problem]:
    """A table of the file: a registry table, with registry columns (see column_problems)."""
    spec = spec_or_none(start.name)
    if spec is None:
        return [Problem(_name(start.name).strip("'"), f"unknown table {_name(start.name)}: "
                                                      "this is not a table adcp-backup knows")]
    return column_problems(spec.name, spec, start.columns, start.families) + sequence_problems(spec.name,
                                                                                              start.sequence)


def header_problems(header: dict[str, Any]) -> list[Problem]:
    """The header's schema: registry tables and columns only, and DDL that is the shipped DDL (see ddl_problems)."""
    schema = header.get("schema")
    if schema is None:
        return []
    if not isinstance(schema, dict):
        return [Problem("header", "the schema is not an object")]
    problems: list[Problem] = []
    tables = schema.get("tables") or {}
    if not isinstance(tables, dict):
        return [Problem("header", "the schema's tables are not an object")]
    for name, columns in tables.items():
        spec = spec_or_none(name)
        if spec is None:
            problems.append(Problem("header", f"the schema names an unknown table {_name(name)}"))
            continue
        if not isinstance(columns, list) or not all(isinstance(c, dict) for c in columns):
            problems.append(Problem("header", f"the schema's columns of {name} are malformed"))
            continue
        problems.extend(Problem("header", f"{name}: {p.message}") for p in
                        column_problems(name, spec, [c.get("name") for c in columns],
                                        [c.get("family") for c in columns]))
    problems.extend(ddl_problems(schema.get("engine"), schema.get("ddl")))
    return problems


_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\w+|\S")
_COMMENT = re.compile(r"--[^\n]*")
_SPELLINGS = (
    (re.compile(r"\bpublic \. "), ""),  # PostgreSQL qualifies index targets with the schema
    (re.compile(r"\b(int|integer|bigint|smallint|mediumint) \( \d+ \)"), r"\1"),  # MySQL display widths
    (re.compile(r" default null\b"), ""),  # MariaDB spells out the default of a nullable column
)


def normalise_ddl(statement: str) -> str:
    """One spelling per statement: comments and layout dropped, identifiers unquoted, case folded (string
    literals kept as they are), and the few spellings engines vary in (schema prefix, display widths)."""
    tokens = []
    for token in _TOKEN.findall(_COMMENT.sub(" ", statement)):
        if token[0] == "'":
            tokens.append(token)
        elif token[0] in "\"`" and len(token) > 1:
            tokens.append(token[1:-1].lower())
        else:
            tokens.append(token.lower())
    while tokens and tokens[-1] == ";":
        tokens.pop()
    text = " ".join(tokens)
    for pattern, replacement in _SPELLINGS:
        text = pattern.sub(replacement, text)
    return text


@cache
def reference_ddl(vendor: str) -> frozenset[str]:
    """The statements a backup's DDL may hold for an engine: the shipped DDL, as written and as captured."""
    statements: list[str] = []
    folder = resources.files("adcp_backup").joinpath("schema")
    for name in (f"{vendor}.sql", f"{vendor}.captured.sql"):
        entry = folder.joinpath(name)
        if entry.is_file():
            statements.extend(split_sql(entry.read_text(encoding="utf-8")))
    return frozenset(normalise_ddl(s) for s in statements)


def ddl_problems(engine: Any, ddl: Any) -> list[Problem]:
    """The header's DDL is informational and never executed; any statement that is not one of the shipped
    schema's is a sign of tampering, and makes the file invalid."""
    if ddl is None or ddl == []:
        return []
    if not isinstance(ddl, list) or not all(isinstance(s, str) for s in ddl):
        return [Problem("header", "the schema's ddl is not a list of statements")]
    if engine not in ENGINES:
        return [Problem("header", f"the schema's engine {_name(engine)} is none of {', '.join(ENGINES)}")]
    allowed = reference_ddl(engine)
    problems = []
    for number, statement in enumerate(ddl, 1):
        if normalise_ddl(statement) not in allowed:
            first = " ".join(statement.split())
            shown = first if len(first) <= 100 else first[:97] + "..."
            problems.append(Problem("header", f"ddl statement {number} is not part of the AdCP {engine} schema "
                                              f"this version ships: {shown!r}"))
    return problems


def file_problems(record: FileRecord, checker: settings_files.RecordChecker | None = None) -> list[Problem]:
    """A settings-file record: the rules live beside the code that writes settings files. Give every record of
    one file the same ``checker``, so that two records for one settings file are caught."""
    return (checker if checker is not None else settings_files.RecordChecker()).check(record)


MAX_SEQUENCE = 2**63 - 1  # the largest counter any engine keeps


def sequence_problems(section: str, sequence: Any) -> list[Problem]:
    """A table's counter, which a restore gives the database: absent, or an integer it can hold."""
    if sequence is None or (type(sequence) is int and 0 <= sequence <= MAX_SEQUENCE):
        return []
    return [Problem(section, f"the sequence {_name(sequence)} is not a counter (an integer from 0 to 2^63 - 1)")]


def end_problems(header: dict[str, Any], end: TableEnd) -> list[Problem]:
    """A table's end: its rows against the count the header announces (legacy files announce none), and its
    counter."""
    problems = sequence_problems(end.name, end.sequence)
    counts = header.get("counts")
    announced = counts.get(end.name) if isinstance(counts, dict) else None
    if announced is not None and announced != end.rows:
        problems.append(Problem(end.name, f"the header announces {_name(announced)} rows, the file holds {end.rows}"))
    return problems


def require_sound_header(header: dict[str, Any]) -> None:
    """Refuse a header whose schema names anything but the registry's tables and columns, or carries DDL that is
    not the shipped DDL: checked once, as a restore opens the file, before anything the header names is used."""
    problems = header_problems(header)
    if problems:
        raise InvalidBackup(problems)


def checked_events(reader: BackupReader, *, settings_targets: bool) -> Iterator[Event]:
    """A strict reader's events, refused at the first problem validation would report about the file's
    structure, names, counts or settings files, inside the restore's transaction (its header was checked by
    require_sound_header when the file was opened). With ``settings_targets`` (the restore writes the settings
    files) a record whose file cannot be written is refused too, before the commit."""
    files = settings_files.RecordChecker()
    for event in reader.events():
        problems = []
        if isinstance(event, TableStart):
            problems = table_problems(event)
        elif isinstance(event, TableEnd):
            problems = end_problems(reader.header, event)
        elif isinstance(event, FileRecord):
            settings_files.refuse_unsound([event], files, targets=settings_targets)
        if problems:
            raise InvalidBackup(problems)
        yield event

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
    """Checks each row's values against the registry: type family and NOT NULL, and the rules across a row.

    ``not_null`` False leaves NOT NULL to the database's own constraints (a restore with --skip-validation)."""

    def __init__(self, spec: TableSpec | None, columns: Sequence[str], families: Sequence[str], *,
                 not_null: bool = True) -> None:
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
            if nullable or not not_null:
                allowed.add(type(None))
            self.checks.append((i, name, frozenset(allowed), family))
        rules = (factory(columns) for factory in ROW_RULES.get(self.table, ()))
        self.rules: list[RowRule] = [rule for rule in rules if rule is not None]

    def check(self, rows: list[list[Any]], first_row: int) -> list[Problem]:
        problems = []
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


class ScratchSQLite:
    """A SQLite file in a private temporary folder, for what is too large to keep in memory; removed on close.
    Nothing needs to survive a crash, so it is written without a journal and without syncing."""

    def __init__(self, prefix: str) -> None:
        self._temporary = tempfile.TemporaryDirectory(prefix=prefix)
        self.folder = Path(self._temporary.name)
        self.db = sqlite3.connect(self.folder / "keys.sqlite3")
        self.db.execute("PRAGMA journal_mode = OFF")
        self.db.execute("PRAGMA synchronous = OFF")

    def close(self) -> None:
        self.db.close()
        self._temporary.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KeyIndex(ScratchSQLite):
    """Primary, unique and foreign keys of every row seen, kept in a scratch SQLite file, not in memory."""

    def __init__(self) -> None:
        super().__init__("adcp-backup-keys-")
        self._tables: dict[str, tuple[list[str], list[int]]] = {}

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
        self.db.execute(f'CREATE TABLE IF NOT EXISTS "k_{spec.name}" ({cols})')

    def add(self, table: str, rows: list[list[Any]], first_row: int) -> None:
        if table not in self._tables:
            return
        key_columns, positions = self._tables[table]
        marks = ", ".join(["?"] * (len(key_columns) + 1))
        self.db.executemany(
            f'INSERT INTO "k_{table}" VALUES ({marks})',
            ([first_row + k, *(row[p] for p in positions)] for k, row in enumerate(rows)),
        )

    def problems(self, limit: int = 100) -> list[Problem]:
        problems = []
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
                rows = self.db.execute(
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
                self.db.execute(
                    f'CREATE INDEX IF NOT EXISTS "i_{fk.table}_{fk.ref_column}" ON "k_{fk.table}" ("{fk.ref_column}")'
                )
                rows = self.db.execute(
                    f'SELECT c._row, c."{fk.column}" FROM "k_{spec.name}" c LEFT JOIN "k_{fk.table}" p '
                    f'ON p."{fk.ref_column}" = c."{fk.column}" WHERE p._row IS NULL AND c."{fk.column}" IS NOT NULL '
                    f"ORDER BY 1 LIMIT ?", (limit,)
                ).fetchall()
                for row_number, value in rows:
                    problems.append(
                        Problem(spec.name, f"{fk.column} {value!r} has no row in {fk.table}", row_number)
                    )
        return problems


# -- the validation pass -------------------------------------------------------------------------------------
def job_outcome(report: ValidationReport) -> tuple[str, dict[str, Any], str]:
    """How a validation is recorded as a job: an invalid file is its own status, not a failed job."""
    return ("succeeded" if report.valid else "invalid"), report.as_dict(), report.name


def validate_file(open_backup: Callable[[], AbstractContextManager[BackupReader]], *, name: str, path: str | None,
                  target_engine: str | None = None, live: Engine | None = None,
                  progress: ProgressCallback = silent) -> ValidationReport:
    """Read a backup once, to its end: structure, checksums, counts, types, NOT NULL, unique and foreign keys,
    and with ``target_engine`` every value that engine (``live``'s columns, else the shipped schema's) would
    refuse. Problems are capped at ADCP_BACKUP_MAX_PROBLEMS, with the total kept."""
    started = time.monotonic()
    target_limits: dict[str, limits.ValueLimits | None] = {}
    limit = backup_settings.MAX_PROBLEMS
    problems = ProblemLog(limit)  # capped: a file of a billion bad lines keeps `limit` problems and a count
    counts: dict[str, int] = {}
    checksums: dict[str, str | None] = {}
    header: dict[str, Any] = {}
    reader: BackupReader | None = None
    files = settings_files.RecordChecker()
    try:
        with open_backup() as reader, KeyIndex() as keys:
            header = reader.header
            problems.extend(header_problems(header))
            checkers: dict[str, RowChecker] = {}  # by table: a legacy v1.0 file interleaves tenants and products
            expected = header.get("counts") or {}
            for event in reader.events():
                if isinstance(event, TableStart):
                    structure = table_problems(event)
                    if structure:
                        problems.extend(structure)
                        continue
                    spec = dataset.table(event.name)
                    checkers[event.name] = RowChecker(spec, event.columns, event.families)
                    if target_engine is not None:
                        target_limits[event.name] = limits.for_target(target_engine, spec.name, event.columns,
                                                                      live=live)
                    keys.start_table(spec, event.columns)
                    progress(ProgressEvent("validate", event.name, 0, expected.get(event.name)))
                elif isinstance(event, RowBatch):
                    checker = checkers.get(event.table)
                    if checker is not None:
                        if not problems.full:
                            problems.extend(checker.check(event.rows, event.first_row))
                        target = target_limits.get(event.table)
                        if target is not None and len(problems) < limit:
                            problems.extend(target.check(event.rows, event.first_row))
                        keys.add(event.table, event.rows, event.first_row)
                    progress(ProgressEvent("validate", event.table, event.first_row + len(event.rows) - 1,
                                           expected.get(event.table)))
                elif isinstance(event, TableEnd):
                    counts[event.name] = event.rows
                    checksums[event.name] = event.sha256
                    problems.extend(end_problems(header, event))
                    progress(ProgressEvent("validate", event.name, event.rows, event.rows, finished=True))
                elif isinstance(event, FileRecord):
                    problems.extend(file_problems(event, files))
            if not any(p.section == "trailer" for p in reader.problems):
                problems.extend(keys.problems(limit))
    except InvalidBackup as exc:
        problems.extend(exc.problems)
    found = ProblemLog(limit)
    if reader is not None:
        found.absorb(reader.problems)
    found.absorb(problems)
    provenance = _content_provenance(reader, list(found.items))
    return ValidationReport(
        name=name,
        path=path,
        valid=not found,
        format=reader.format if reader is not None else None,
        compression=reader.compression if reader is not None else None,
        encrypted=(reader is not None and reader.encrypted) or any(p.section == "encryption" for p in found),
        created_at=header.get("created_at"),
        counts=counts,
        checksums=checksums,
        problems=list(found.items),
        problems_total=found.total,
        duration=time.monotonic() - started,
        provenance=provenance.status,
        provenance_note=provenance.note,
        future_dated=is_future(parse_time(header.get("created_at"))),
        withheld_files=[str(p) for p in header.get("withheld_files") or []][:100],
        target_engine=target_engine,
    )


def _content_provenance(reader: BackupReader | None, problems: list[Problem]) -> signing.Provenance:
    """Who wrote a file read to its end: the trailer's MAC, which counts only for a file without problems."""
    if reader is None:
        return signing.Provenance(signing.UNSIGNED, "the file could not be read")
    if not isinstance(reader, NativeReader):
        return signing.legacy()
    if problems:
        return signing.Provenance(signing.UNSIGNED, "the file has problems, so its signature proves nothing")
    return reader.provenance or signing.Provenance(signing.UNSIGNED, "the file has no trailer")
