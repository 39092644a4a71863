"""Restore drills: a backup restored into a scratch database of the live one's engine, read back and compared.

The scratch database is a temporary SQLite file, a temporary PostgreSQL database (or, when the role may not
create databases, a temporary schema), or a temporary MariaDB database. Its name carries a recognisable prefix,
this host and this process id, so the next drill can remove what a killed one left behind. It is reached through
a database alias added to ``django.db.connections`` for the drill's duration; the live database's own
connections are never used, and nothing in it is written or locked. Drills exclude each other through a lock
file of their own, so they never wait for, nor hold up, backups, restores and prunes.

The last drill (and the last successful one) is recorded in a small JSON file beside the lock file, so
monitoring works with or without the admin's job table.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import platform
import re
import resource
import secrets
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections, transaction

from . import dataset, locking
from .conf import backup_settings
from .dataset import BLOB, BOOLEAN, DATETIME, FLOAT, INTEGER, TEXT
from .db import engine_for, get_engine
from .db.base import Engine, shipped_ddl
from .exceptions import (
    BackupConfigurationError,
    BackupError,
    BackupLocked,
    InvalidBackup,
    Problem,
    RestoreError,
    ValuesRefused,
)
from .format.events import BackupReader, RowBatch, TableEnd, TableStart
from .format.reader import NativeReader
from .format.values import row_encoder
from .progress import ProgressCallback, ProgressEvent

logger = logging.getLogger(__name__)

DATABASE_PREFIX = "adcp_drill_"
FILE_PREFIX = "adcp-drill-"
STATE_FILE_NAME = ".adcp-drill.json"
LOCK_FILE_NAME = ".adcp-drill.lock"
_NAME = re.compile(r"^adcp_drill_([a-z0-9]{0,16})_(\d{1,10})_([0-9a-f]{6})$")
_FILE_NAME = re.compile(r"^adcp-drill-([a-z0-9]{0,16})-(\d{1,10})-([0-9a-f]{6})\.sqlite3(-wal|-shm|-journal)?$")
MEMORY_SAMPLE_SECONDS = 0.05


# -- results ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableCheck:
    """One table of a drill: the file's rows and checksum beside those recomputed from the scratch database."""

    rows_in_file: int
    rows_restored: int
    checksum_in_file: str | None
    checksum_restored: str | None
    compared: str  # "exact": same engine, the backup's own encoding; "normalized": values compared by family
    matches: bool


@dataclass(frozen=True)
class DrillResult:
    name: str
    format: str | None
    database: str
    engine: str
    scratch: dict[str, str]
    restorable: bool
    tables: dict[str, TableCheck]
    problems: list[Problem]
    checks: dict[str, bool | None]  # counts, checksums, foreign_keys, fts (None: not applicable)
    restore_seconds: float
    verify_seconds: float
    duration: float
    scratch_seconds: float  # finding leftovers, creating and removing the scratch database
    peak_memory_bytes: int
    memory_growth_bytes: int
    leftovers_removed: list[str]
    notes: list[str]
    started_at: str
    finished_at: str

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = [p.as_dict() for p in self.problems]
        return data

    def summary(self) -> dict[str, Any]:
        """What the state file and the job history keep of a drill."""
        return {"name": self.name, "restorable": self.restorable, "database": self.database, "engine": self.engine,
                "finished_at": self.finished_at, "restore_seconds": round(self.restore_seconds, 3),
                "duration": round(self.duration, 3), "peak_memory_bytes": self.peak_memory_bytes,
                "counts": {t: c.rows_restored for t, c in self.tables.items()},
                "problems": [str(p) for p in self.problems[:5]]}


# -- the drill -------------------------------------------------------------------------------------------
RestoreCall = Callable[..., Any]
OpenBackup = Callable[[], AbstractContextManager[BackupReader]]


def run(*, name: str, file: str, database: str, identity: str | os.PathLike[str] | None,
        restore_into: RestoreCall, open_backup: OpenBackup,
        progress: ProgressCallback) -> DrillResult:
    """Restore ``file`` into a scratch database beside ``database``'s, verify it, remove it; record the verdict.

    ``restore_into`` is the real restore (services.backup_restore without its live-database lock and signals);
    ``open_backup`` opens the file again for the comparison. A backup that does not restore gives a result with
    ``restorable=False``; a drill that cannot run raises BackupError."""
    if database not in connections.settings:
        raise BackupConfigurationError(f"There is no database {database!r} in DATABASES.")
    started_at = datetime.now(UTC)
    started = time.monotonic()
    with _drill_lock(), _memory_sampler() as memory, _terminate_as_interrupt():
        removed = remove_leftovers(database)
        with scratch_database(database) as (alias, scratch):
            ready = time.monotonic()
            result = _drill(name=name, file=file, live=database, alias=alias, scratch=scratch, identity=identity,
                            restore_into=restore_into, open_backup=open_backup, progress=progress)
            done = time.monotonic()
        peak, growth = memory.peak, memory.growth
    result = replace(result, leftovers_removed=removed, peak_memory_bytes=peak, memory_growth_bytes=growth,
                     duration=time.monotonic() - started, started_at=started_at.isoformat(), finished_at=_now(),
                     scratch_seconds=round(ready - started + time.monotonic() - done, 3))
    record(result.summary())
    logger.info("Drill of %s: %s (restore %.2f s, %s rows)", name,
                "restorable" if result.restorable else f"NOT restorable: {result.problems[:1]}",
                result.restore_seconds, sum(c.rows_restored for c in result.tables.values()))
    return result


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _drill(*, name: str, file: str, live: str, alias: str, scratch: dict[str, str],
           identity: str | os.PathLike[str] | None,
           restore_into: RestoreCall, open_backup: OpenBackup, progress: ProgressCallback) -> DrillResult:
    engine = get_engine(alias)
    notes: list[str] = []
    problems: list[Problem] = []
    with open_backup() as reader:
        header = reader.header
        fmt = reader.format
    tenant_backup = (header.get("scope") or {}).get("tenants") not in (None, "all")
    # A tenant restore fills an existing schema; a temporary schema shares the live database's catalog, where
    # DDL captured from that database names the live tables. Both get the application's own DDL first.
    precreate = tenant_backup or scratch["kind"] == "schema"
    if precreate:
        with engine.connection.wrap_database_errors:
            engine.create_schema(shipped_ddl(engine.vendor))
        notes.append("the scratch database was given the AdCP schema from the application's DDL before the restore")

    last_table: dict[str, Any] = {}

    def watch(event: ProgressEvent) -> None:
        if event.phase == "restore" and event.table:
            last_table.update(table=event.table, done=event.done, finished=event.finished)
        progress(event)

    restore_started = time.monotonic()
    restored: Any = None
    try:
        restored = restore_into(file=file, database=alias, create_schema=not precreate, safety_backup=False,
                                restore_settings=False, identity=identity, progress=watch)
    except (InvalidBackup, ValuesRefused) as exc:  # both name their rows: a value the database cannot store
        problems.extend(exc.problems)
    except Exception as exc:
        if not (isinstance(exc, RestoreError) or refused_by_database(exc)):
            raise  # the drill could not run (no key, no file, a setting): not a verdict on the backup
        located = _locate_refused_row(engine, open_backup, header)
        if located is None:
            located = _failure_without_row(exc, last_table)
        problems.append(located)
    restore_seconds = time.monotonic() - restore_started
    if restored is not None:
        notes.extend(restored.notes)

    verify_started = time.monotonic()
    tables: dict[str, TableCheck] = {}
    checks: dict[str, bool | None] = {"restore": not problems, "counts": None, "checksums": None,
                                      "foreign_keys": None, "fts": None}
    if not problems:
        progress(ProgressEvent("drill", message="Reading the restored tables back..."))
        tables, found = verify(engine, open_backup, header, progress=progress)
        checks["counts"] = all(c.rows_in_file == c.rows_restored for c in tables.values())
        checks["checksums"] = all(c.matches for c in tables.values())
        problems.extend(found)
        # The restore pipeline checked every foreign key and the full-text index in the scratch database before it
        # committed (an orphan or a broken index fails the restore, and the drill with it): they hold as checked.
        checks["foreign_keys"] = True
        if engine.supports_fts and dataset.FTS_TABLE in engine.existing_tables():
            checks["fts"] = True
    limit = backup_settings.MAX_PROBLEMS
    return DrillResult(name=name, format=fmt, database=live, engine=engine.vendor, scratch=scratch,
                       restorable=not problems, tables=tables, problems=problems[:limit], checks=checks,
                       restore_seconds=restore_seconds, verify_seconds=time.monotonic() - verify_started,
                       duration=0.0, scratch_seconds=0.0, peak_memory_bytes=0, memory_growth_bytes=0,
                       leftovers_removed=[], notes=notes, started_at="", finished_at="")


def refused_by_database(exc: BaseException) -> bool:
    """An error of the database or of its driver (some drivers raise their own classes outside Django's wrapper)."""
    if isinstance(exc, DatabaseError):
        return True
    return type(exc).__module__.split(".")[0] in ("sqlite3", "psycopg", "psycopg2", "MySQLdb", "pymysql")


def _failure_without_row(exc: BaseException, last_table: dict[str, Any]) -> Problem:
    """Where a restore failed when no single row is to blame: the table being written, or the final checks."""
    message = str(exc).strip() or type(exc).__name__
    table = last_table.get("table")
    section = dataset.FTS_TABLE if dataset.FTS_TABLE in message else "restore"
    if table is None:
        return Problem(section, f"the restore failed before any row was written: {message}")
    if last_table.get("finished"):
        return Problem(section, f"the restore failed after the rows were written: {message}")
    return Problem(str(table), f"the restore failed while writing {table}, after row {last_table.get('done', 0)}: "
                               f"{message}")


# -- reading back ----------------------------------------------------------------------------------------
@dataclass
class _FileTable:
    columns: list[str]
    families: list[str]
    rows: int = 0
    sha256: str | None = None
    digests: dict[Any, tuple[bytes, int]] = field(default_factory=dict)
    unkeyed: int = 0


def verify(engine: Engine, open_backup: OpenBackup, header: dict[str, Any], *,
           progress: ProgressCallback) -> tuple[dict[str, TableCheck], list[Problem]]:
    """Compare every restored table with the file and recompute its checksum from the scratch database.

    A native file from this engine is compared in the backup's own canonical encoding: the SHA-256 recomputed
    from the restored rows, in key order, must equal the file's own table checksum (read from its table end
    records, without parsing the rows again); a table that differs is then compared row by row to name the row.
    Any other file (another engine's, a legacy one) is compared row by row with what the reader yields, value by
    value after normalising each column family."""
    source_vendor = (header.get("schema") or {}).get("engine") or (header.get("source") or {}).get("engine")
    problems: list[Problem] = []
    files: dict[str, _FileTable] = {}
    with open_backup() as reader:
        exact = isinstance(reader, NativeReader) and source_vendor == engine.vendor
        if isinstance(reader, NativeReader) and exact:
            for event in reader.structure():
                if isinstance(event, TableStart) and _spec(event.name) is not None:
                    files[event.name] = _FileTable(list(event.columns), list(event.families))
                elif isinstance(event, TableEnd) and event.name in files:
                    files[event.name].rows += event.rows
                    files[event.name].sha256 = event.sha256
        else:
            files = _file_rows(reader, exact=False)

    checks: dict[str, TableCheck] = {}
    present = engine.existing_tables()
    for spec in dataset.tables():
        table = files.get(spec.name)
        if table is None:
            continue
        if spec.name not in present:
            problems.append(Problem(spec.name, "the table is missing from the restored database"))
            continue
        restored, recomputed, differing = _read_back(engine, spec, table, exact=exact, keyed=not exact,
                                                     problems=problems, progress=progress)
        if exact and (recomputed != table.sha256 or restored != table.rows):
            with open_backup() as reader:  # name the rows that differ: the slow way, for this table only
                table = _file_rows(reader, exact=True, only=spec.name).get(spec.name, table)
            restored, recomputed, differing = _read_back(engine, spec, table, exact=True, keyed=True,
                                                         problems=problems, progress=progress)
            if not differing and recomputed != table.sha256:
                problems.append(Problem(spec.name, "the checksum recomputed from the restored rows differs from "
                                                   "the backup's"))
        if restored != table.rows:
            problems.append(Problem(spec.name, f"the backup holds {table.rows} rows, the restored table {restored}"))
        checks[spec.name] = TableCheck(
            rows_in_file=table.rows, rows_restored=restored, checksum_in_file=table.sha256,
            checksum_restored=recomputed, compared="exact" if exact else "normalized",
            matches=not differing and restored == table.rows and (not exact or recomputed == table.sha256),
        )
    return checks, problems[:backup_settings.MAX_PROBLEMS]


def _file_rows(reader: BackupReader, *, exact: bool, only: str | None = None) -> dict[str, _FileTable]:
    """Each table's rows as digests by primary key, with their row numbers in the file."""
    files: dict[str, _FileTable] = {}
    encoders: dict[str, Callable[[Any], bytes]] = {}
    keys: dict[str, int | None] = {}
    for event in reader.events():
        if isinstance(event, TableStart):
            spec = _spec(event.name)
            if spec is None or (only is not None and event.name != only):
                continue
            table = files.setdefault(event.name, _FileTable(list(event.columns), list(event.families)))
            if table.columns != list(event.columns):
                table.columns, table.families = list(event.columns), list(event.families)
            keys[event.name] = event.columns.index(spec.primary_key) if spec.primary_key in event.columns else None
            encoders[event.name] = _line_encoder(event.families, exact)
        elif isinstance(event, RowBatch) and event.table in files:
            table = files[event.table]
            encode = encoders[event.table]
            key = keys[event.table]
            for offset, row in enumerate(event.rows):
                if key is None:
                    table.unkeyed += 1
                    continue
                table.digests[_key(row[key])] = (_digest(encode(row)), event.first_row + offset)
        elif isinstance(event, TableEnd) and event.name in files:
            files[event.name].rows += event.rows
            files[event.name].sha256 = event.sha256
    return files


def _read_back(engine: Engine, spec: dataset.TableSpec, table: _FileTable, *, exact: bool, keyed: bool,
               problems: list[Problem], progress: ProgressCallback) -> tuple[int, str, int]:
    """Read one restored table in key order: its row count, its recomputed SHA-256 in the backup's encoding,
    and (``keyed``) how many rows differ from the file's, each added to ``problems``."""
    limit = backup_settings.MAX_PROBLEMS
    progress(ProgressEvent("drill", spec.name, 0, table.rows))
    raw_encode = row_encoder(table.families)
    compare = _line_encoder(table.families, exact)
    checksum = hashlib.sha256()
    restored = differing = 0
    expected = dict(table.digests) if keyed else {}
    key_index = table.columns.index(spec.primary_key) if spec.primary_key in table.columns else None
    keyed = keyed and key_index is not None and not table.unkeyed
    batch = backup_settings.BATCH_SIZE
    if BLOB in table.families:
        batch = max(1, batch // 8)  # wide rows (embeddings): smaller batches keep the drill's memory flat
    for batch_rows in engine.read_rows(spec, table.columns, batch_size=batch):
        rows = list(batch_rows)
        lines = [raw_encode(row) for row in rows]
        checksum.update(b"\n".join(lines) + b"\n")
        restored += len(rows)
        if keyed:
            for db_row, line in zip(rows, lines, strict=True):
                key = _key(db_row[key_index])  # type: ignore[index]
                wanted = expected.pop(key, None)
                if wanted is None:
                    differing += 1
                    if len(problems) < limit:
                        problems.append(Problem(spec.name, f"id {key}: in the restored table but not in the backup"))
                elif _digest(line if exact else compare(db_row)) != wanted[0]:
                    differing += 1
                    if len(problems) < limit:
                        problems.append(Problem(spec.name, f"id {key}: the restored row differs from the backup's",
                                                wanted[1]))
        progress(ProgressEvent("drill", spec.name, restored, table.rows))
    for key, (_value, row_number) in sorted(expected.items(), key=lambda item: item[1][1]):
        differing += 1
        if len(problems) < limit:
            problems.append(Problem(spec.name, f"id {key}: missing from the restored table", row_number))
    progress(ProgressEvent("drill", spec.name, restored, table.rows, finished=True))
    return restored, checksum.hexdigest() if restored else hashlib.sha256().hexdigest(), differing


def _spec(name: str) -> dataset.TableSpec | None:
    try:
        return dataset.table(name)
    except KeyError:
        return None


def _digest(line: bytes) -> bytes:
    return hashlib.blake2b(line, digest_size=16).digest()


def _key(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _line_encoder(families: list[str], exact: bool) -> Callable[[Any], bytes]:
    """The backup's own row encoding; for a comparison across engines, of values normalised first."""
    encode = row_encoder(families)
    if exact:
        return encode
    normalisers = [_NORMALISERS.get(f, _same) for f in families]

    def normalised(row: Any) -> bytes:
        return encode([n(v) if v is not None else None for n, v in zip(normalisers, row, strict=False)])

    return normalised


def _same(value: Any) -> Any:
    return value


def _as_int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _as_float(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _as_bool(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true", "yes")
    return bool(value)


def _as_text(value: Any) -> Any:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _as_bytes(value: Any) -> Any:
    if isinstance(value, (memoryview, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def _as_datetime(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return value


_NORMALISERS: dict[str, Callable[[Any], Any]] = {INTEGER: _as_int, FLOAT: _as_float, BOOLEAN: _as_bool,
                                                 TEXT: _as_text, BLOB: _as_bytes, DATETIME: _as_datetime}


# -- naming the row a database refused -------------------------------------------------------------------
def _locate_refused_row(engine: Engine, open_backup: OpenBackup, header: dict[str, Any]) -> Problem | None:
    """Replay the file into the emptied scratch database, batch by batch and then row by row, inside a
    transaction that is rolled back, to name the table and row the engine refused. None when no row fails."""
    from .restore import TableWriter

    source_vendor = (header.get("schema") or {}).get("engine") or (header.get("source") or {}).get("engine")
    alias = engine.alias
    try:
        with engine.connection.wrap_database_errors:
            present = engine.existing_tables()
            if not any(spec.name in present for spec in dataset.tables()):
                engine.create_schema(shipped_ddl(engine.vendor))
            elif not all(spec.name in present for spec in dataset.tables()):
                return None
        with open_backup() as reader, transaction.atomic(using=alias):
            writers: dict[str, TableWriter] = {}
            for event in reader.events():
                if isinstance(event, TableStart):
                    spec = _spec(event.name)
                    if spec is not None:
                        writers[event.name] = TableWriter(engine, spec, event, None, source_vendor, False)
                elif isinstance(event, RowBatch) and event.table in writers:
                    writer = writers[event.table]
                    pristine = [list(row) for row in event.rows]
                    if _written(engine, writer, [list(row) for row in pristine], event.first_row):
                        continue
                    for offset, row in enumerate(pristine):
                        error = _row_error(engine, writer, list(row), event.first_row + offset)
                        if error is not None:
                            transaction.set_rollback(True, using=alias)
                            return Problem(event.table, f"the {engine.vendor} database refuses the row: {error}",
                                           event.first_row + offset)
                    transaction.set_rollback(True, using=alias)
                    return None
            transaction.set_rollback(True, using=alias)
    except Exception as exc:
        if not (refused_by_database(exc) or isinstance(exc, (BackupError, ValueError, TypeError))):
            raise
        logger.info("Could not name the row the restore failed on: %s", exc)
    return None


def _written(engine: Engine, writer: Any, rows: list[list[Any]], first_row: int) -> bool:
    return _row_error(engine, writer, rows, first_row) is None


def _row_error(engine: Engine, writer: Any, rows: Any, first_row: int) -> str | None:
    rows = rows if rows and isinstance(rows[0], list) else [rows]
    try:
        with transaction.atomic(using=engine.alias), engine.connection.wrap_database_errors:
            writer.write(rows, first_row)
            engine.count(writer.spec.name)  # ends a pending bulk write, so that its error surfaces here
    except Exception as exc:
        if not refused_by_database(exc):
            raise
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


# -- the scratch database --------------------------------------------------------------------------------
def host_tag() -> str:
    return re.sub(r"[^a-z0-9]", "", platform.node().lower())[:16]


def scratch_name() -> str:
    return f"{DATABASE_PREFIX}{host_tag()}_{os.getpid()}_{secrets.token_hex(3)}"


def scratch_folder() -> Path:
    return backup_settings.DRILL_DIR or Path(tempfile.gettempdir()).resolve()


@contextmanager
def _admin_engine(live: str) -> Iterator[Engine]:
    """The engine on a connection of its own to the live server, for creating and dropping scratch databases:
    the live alias's connections are untouched."""
    connection = connections.create_connection(live)
    try:
        yield engine_for(connection)
    finally:
        connection.close()


@contextmanager
def scratch_database(live: str) -> Iterator[tuple[str, dict[str, str]]]:
    """An alias of ``django.db.connections`` for a new, empty database of ``live``'s engine; removed after."""
    live_settings = connections.settings[live]
    vendor = _vendor(live_settings)
    name = scratch_name()
    scratch_settings = {**live_settings, "OPTIONS": dict(live_settings.get("OPTIONS") or {}),
                        "TEST": dict(live_settings.get("TEST") or {}), "CONN_MAX_AGE": 0, "ATOMIC_REQUESTS": False}
    kind = "database"
    if vendor == "sqlite":
        path = scratch_folder() / f"{FILE_PREFIX}{host_tag()}-{os.getpid()}-{name[-6:]}.sqlite3"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600, exist_ok=False)
        except OSError as exc:
            raise BackupConfigurationError(f"Cannot create the drill's scratch database {path}: {exc.strerror}. "
                                           "Set ADCP_BACKUP_DRILL_DIR to a writable folder.") from exc
        scratch_settings["NAME"] = str(path)
        kind, shown = "file", str(path)
    else:
        kind = _create_scratch(live, name)
        shown = name
        scratch_settings["NAME"] = name if kind == "database" else live_settings["NAME"]
        if kind == "schema":  # PostgreSQL: the scratch schema comes first on the search path
            extra = f"-c search_path={name}"
            previous = scratch_settings["OPTIONS"].get("options")
            scratch_settings["OPTIONS"]["options"] = f"{previous} {extra}" if previous else extra
    alias = name
    connections.settings[alias] = scratch_settings
    try:
        yield alias, {"kind": kind, "name": shown, "engine": vendor}
    finally:
        try:
            connections[alias].close()
        finally:
            try:
                del connections[alias]
            except AttributeError:
                pass
            connections.settings.pop(alias, None)
            _drop(live, vendor, kind, name, shown)


def _vendor(settings_dict: dict[str, Any]) -> str:
    engine = str(settings_dict.get("ENGINE", ""))
    if "sqlite" in engine:
        return "sqlite"
    if "postgres" in engine:
        return "postgresql"
    if "mysql" in engine:
        return "mysql"
    return engine.rsplit(".", 1)[-1]


def _user(live: str) -> str:
    return str(connections.settings[live].get("USER") or "the database user")


def _create_scratch(live: str, name: str) -> str:
    """Create the scratch database ``name`` on ``live``'s server: ``database``; or ``schema``, a schema of the live
    database, where the engine allows one and CREATE DATABASE is refused or not wanted
    (ADCP_BACKUP_DRILL_POSTGRESQL_SCRATCH)."""
    with _admin_engine(live) as engine:
        wanted = "database"
        if engine.scratch_schemas:
            wanted = backup_settings.DRILL_POSTGRESQL_SCRATCH
        if wanted == "database":
            try:
                engine.create_database(name)
                return "database"
            except DatabaseError as exc:
                if not engine.lacks_privilege(exc):
                    raise BackupError(f"The drill could not create its scratch database: {exc}") from exc
                if not engine.scratch_schemas:
                    raise _refused(live, engine, exc) from exc
                logger.info("The role may not create databases (%s); the drill uses a temporary schema.", exc)
        try:
            engine.create_database(name, schema=True)
        except DatabaseError as exc:
            raise _refused(live, engine, exc) from exc
        return "schema"


def _refused(live: str, engine: Engine, exc: DatabaseError) -> BackupConfigurationError:
    hint = engine.scratch_privilege_hint(_user(live), str(connections.settings[live].get("NAME")), DATABASE_PREFIX)
    return BackupConfigurationError(f"The drill cannot create a scratch database: {hint}. ({str(exc).strip()})")


def _drop(live: str, vendor: str, kind: str, name: str, shown: str) -> None:
    try:
        if vendor == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(shown + suffix).unlink(missing_ok=True)
            return
        if not _NAME.match(name):
            raise ValueError(f"not a scratch database name: {name!r}")
        with _admin_engine(live) as engine:
            engine.drop_database(name, schema=kind == "schema")
    except (OSError, DatabaseError, ValueError) as exc:
        logger.warning("Could not remove the drill's scratch %s %s: %s; the next drill removes it.", kind, shown, exc)


def _owner_gone(host: str, pid: int) -> bool:
    """Whether the process that made a scratch database has ended (only knowable for this host)."""
    if host != host_tag():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return pid == os.getpid()  # held under the drill lock: this process's own leftover is from an earlier drill


def remove_leftovers(live: str) -> list[str]:
    """Scratch databases, schemas and files whose drill was killed: found by prefix, owner checked, removed."""
    vendor = _vendor(connections.settings[live])
    removed: list[str] = []
    if vendor == "sqlite":
        folder = scratch_folder()
        if folder.is_dir():
            for path in sorted(folder.glob(f"{FILE_PREFIX}*")):
                match = _FILE_NAME.match(path.name)
                if match and _owner_gone(match.group(1), int(match.group(2))):
                    try:
                        path.unlink()
                        removed.append(str(path))
                    except OSError as exc:
                        logger.warning("Could not remove the drill leftover %s: %s", path, exc)
        return removed
    with _admin_engine(live) as engine:
        found = engine.databases_named(DATABASE_PREFIX)
    for kind, name in found:
        match = _NAME.match(name)
        if match and _owner_gone(match.group(1), int(match.group(2))):
            _drop(live, vendor, kind, name, name)
            removed.append(name)
    if removed:
        logger.info("Removed %s left behind by killed drills: %s", len(removed), ", ".join(removed))
    return removed


# -- the drill's own lock, memory and signals ------------------------------------------------------------
@contextmanager
def _drill_lock() -> Iterator[None]:
    """One drill at a time on this machine; backups, restores and prunes are neither waited for nor blocked."""
    path = locking.lock_path().parent / LOCK_FILE_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise BackupConfigurationError(f"Cannot open the drill's lock file {path}: {exc.strerror}.") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise BackupLocked("Another restore drill is running on this machine; try again when it has "
                               "finished.") from exc
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class _Memory:
    def __init__(self) -> None:
        self.start = _rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="adcp-drill-memory", daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(MEMORY_SAMPLE_SECONDS):
            self.peak = max(self.peak, _rss())

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.start)


@contextmanager
def _memory_sampler() -> Iterator[_Memory]:
    """The process's peak resident memory during the drill, sampled (and from the kernel's own peak when it
    was reached during the drill)."""
    memory = _Memory()
    memory._thread.start()
    try:
        yield memory
    finally:
        memory._stop.set()
        memory._thread.join()
        memory.peak = max(memory.peak, _rss())


def _rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class DrillInterrupted(KeyboardInterrupt):
    """SIGTERM during a drill: unwinds like Ctrl-C, so the scratch database is removed on the way out."""


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """In a process's main thread where SIGTERM would kill outright, make it unwind instead."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise DrillInterrupted("The drill was stopped by SIGTERM; its scratch database was removed.")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# -- the record of the last drill ------------------------------------------------------------------------
def state_path() -> Path:
    return locking.lock_path().parent / STATE_FILE_NAME


def record(summary: dict[str, Any]) -> None:
    """Keep the last drill, and the last successful one, in the state file (written atomically): overall, and
    per database (``summary["database"]``), so that each database's monitoring sees its own drills."""
    path = state_path()
    state = read_state()
    mine = state.setdefault("databases", {}).setdefault(str(summary.get("database")), {})
    for kept in (state, mine):
        kept["last"] = summary
        if summary.get("restorable"):
            kept["last_success"] = summary
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(state, out, indent=1, default=str)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        logger.warning("Could not record the drill's result in %s: %s", path, exc)


def _drills(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k in ("last", "last_success") and isinstance(v, dict)}


def read_state() -> dict[str, Any]:
    """``{"last": {...}, "last_success": {...}, "databases": {alias: {"last", "last_success"}}}``, each part
    missing when there was none."""
    try:
        data = json.loads(state_path().read_text(encoding="utf-8")[:1 << 20])
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    state = _drills(data)
    databases = data.get("databases")
    if isinstance(databases, dict):
        state["databases"] = {str(alias)[:200]: _drills(entry) for alias, entry in list(databases.items())[:100]}
    return state


def info(max_age_seconds: float | None, *, database: str | None = None) -> dict[str, Any]:
    """The last drill and the last successful one, with its age; ``stale`` when none is recent enough.

    With ``database``: that database's drills only (a state file from before drills were kept per database
    counts for the default database)."""
    state = read_state()
    if database is not None:
        if "databases" in state:
            state = state["databases"].get(database, {})
        elif database != backup_settings.default_database:
            state = {}
    success = state.get("last_success")
    age = None
    if success is not None:
        finished = _parse_time(success.get("finished_at"))
        if finished is not None:
            age = round((datetime.now(UTC) - finished).total_seconds(), 1)
    stale = max_age_seconds is not None and (age is None or age > max_age_seconds)
    return {"last": state.get("last"), "last_success": success, "last_success_age_seconds": age,
            "max_age": max_age_seconds, "stale": stale, "state_file": str(state_path()),
            "schedule": backup_settings.DRILL_SCHEDULE or None}


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
