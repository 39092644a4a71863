"""The one API of adcp-backup: every command, admin view and task calls these functions."""
from __future__ import annotations

import functools
import inspect
import logging
import os
import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import django
from django.db import DatabaseError, connections
from django.utils import timezone as django_timezone

from . import (
    __version__,
    dataset,
    history,
    keys,
    locking,
    monitoring,
    origin,
    restore,
    retention,
    settings_files,
    signals,
    signing,
    validation,
)
from . import scope as tenant_scope
from .conf import backup_settings
from .db import get_engine, limits
from .db.base import Engine, fingerprint
from .exceptions import (
    BackupError,
    EncryptionKeyError,
    InvalidBackup,
    RestoreError,
    UnsignedBackup,
    ValuesRefused,
)
from .format import codecs, crypto
from .format.events import BackupReader, FileRecord, TableEnd
from .format.reader import NativeReader
from .format.writer import BackupWriter
from .naming import is_future, new_backup_name, parse_time
from .progress import ProgressCallback, ProgressEvent, silent
from .reading import open_backup
from .results import (
    POLICY_FROM_FLAGS,
    POLICY_FROM_SETTINGS,
    BackupEntry,
    BackupResult,
    DeleteResult,
    InfoResult,
    PruneResult,
    RestorePlan,
    RestoreResult,
    ValidationReport,
)
from .sources import Source
from .sources import resolve as resolve_source
from .storage import BackupStorage, open_output, stream_file
from .uploads import UPLOAD_PREFIX

if TYPE_CHECKING:  # drill.py is imported where it is used: a command that lists backups does not need it
    from .drill import DrillResult

logger = logging.getLogger(__name__)


# -- helpers ---------------------------------------------------------------------------------------------
def _storage() -> BackupStorage:
    return BackupStorage()


def _check_tables(engine: Engine) -> list[dataset.TableSpec]:
    existing = engine.existing_tables()
    missing = [t for t in dataset.table_names() if t not in existing]
    if missing:
        raise BackupError(
            f"The database {engine.alias!r} lacks the tables {', '.join(missing)}: "
            "this does not look like an AdCP database (python manage.py adcp_demo creates a demo one)."
        )
    return list(dataset.tables())


def _source_info(engine: Engine) -> dict[str, Any]:
    return {
        **origin.source_header(engine.alias),
        "django": django.get_version(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def _capture_schema(engine: Engine, tables: Sequence[dataset.TableSpec]) -> dict[str, Any]:
    names = [t.name for t in tables]
    columns = engine.describe_all(names)
    return {
        "engine": engine.vendor,
        "fingerprint": fingerprint(columns),
        "tables": columns,
        "ddl": engine.capture_ddl(names),
        "fts": engine.fts_present(),
    }


# -- create ----------------------------------------------------------------------------------------------
@history.recorded("create")
@signals.reported(signals.backup_created, signals.backup_failed)
@locking.locked("backup")
def backup_create(
    *,
    database: str = "default",
    compression: str | None = None,
    output: str | os.PathLike[str] | None = None,
    include_settings: bool = True,
    purpose: str = "manual",
    encrypt: bool | None = None,
    include_secrets: bool = False,
    tenants: Sequence[str] | None = None,
    with_global: Sequence[str] | None = None,
    progress: ProgressCallback = silent,
) -> BackupResult:
    """Write a backup of every AdCP table, the settings files and the environment, streaming.

    ``encrypt`` (default ADCP_BACKUP_ENCRYPT) encrypts it with age to ADCP_BACKUP_AGE_RECIPIENTS;
    ``include_secrets`` keeps secret environment values in clear inside it, and needs encryption.
    With ``tenants`` (slugs): only those tenants' rows, plus the global parts named in ``with_global``."""
    started = time.monotonic()
    compression = (compression or backup_settings.COMPRESSION).lower()
    if compression not in codecs.SUFFIXES:
        raise BackupError(f"Unknown compression {compression!r}: use none, gzip or zstd.")
    encrypt = backup_settings.ENCRYPT if encrypt is None else encrypt
    if include_secrets and not encrypt:
        raise BackupError("--include-secrets keeps API keys and passwords in the file, so it needs encryption: "
                          "add --encrypt (or set ADCP_BACKUP_ENCRYPT) with ADCP_BACKUP_AGE_RECIPIENTS.")
    recipients = keys.configured_recipients() if encrypt else []
    suffix = crypto.SUFFIX if encrypt else ""
    secrets_mode = "included" if include_secrets else "redacted"
    engine = get_engine(database)
    tables = _check_tables(engine)
    scope = tenant_scope.for_backup(engine, tenants=tenants, with_global=with_global)
    if scope is not None:
        tables = scope.tables()
        include_settings = include_settings and scope.include_settings
    storage = _storage()
    name = new_backup_name(compression, suffix=suffix)
    while storage.exists(name):
        name = new_backup_name(compression, suffix=suffix)
    level = backup_settings.GZIP_LEVEL if compression == "gzip" else backup_settings.ZSTD_LEVEL
    created_at = datetime.now(UTC)
    # Settings files are stored byte for byte: one holding secrets goes only into an encrypted backup.
    captured_files = settings_files.capture_files(withhold_secrets=not encrypt) if include_settings else []
    withheld = [c.path for c in captured_files if c.withheld]
    notes: list[str] = []

    with (open_output(storage, name, output, notes) as (out, final_name, final_path),
          crypto.encrypting(out, recipients) if encrypt else nullcontext(out) as sink):
        compressed = codecs.CompressedWriter(sink, compression, level)
        writer = BackupWriter(compressed)
        with engine.snapshot():
            counts = {spec.name: engine.count(spec.name, *tenant_scope.where(scope, engine, spec)) for spec in tables}
            schema = _capture_schema(engine, tables)
            header: dict[str, Any] = {
                "created_at": created_at.isoformat(),
                "tool": f"adcp-backup {__version__}",
                "source": _source_info(engine),
                "scope": scope.header() if scope else {"tenants": "all"},
                "purpose": purpose,
                "counts": counts,
                "compression": compression,
                "secrets": secrets_mode,
                "withheld_files": withheld,
                "schema": schema,
            }
            header["signature"] = signing.header_signature(BackupWriter.header_record(header), final_name)
            writer.header(header)
            for spec in tables:
                _write_table(engine, writer, spec, schema["tables"][spec.name], counts[spec.name], progress,
                             where=tenant_scope.where(scope, engine, spec))
        if include_settings:
            for captured in captured_files:
                writer.file(path=captured.path, content=captured.content, mode=captured.mode,
                            withheld=captured.withheld)
            writer.environment(settings_files.capture_environment(include_secrets=include_secrets))
        written = writer.trailer(sign=signing.trailer_signature)
        compressed.close()
        if written != counts:  # the snapshot guarantees equality; a difference is a bug, never a backup
            raise BackupError(f"Rows changed while they were read ({counts} counted, {written} written).")
    result = BackupResult(
        name=final_name,
        path=final_path,
        size=out.size,
        sha256=out.sha256.hexdigest(),
        counts=written,
        compression=compression,
        encrypted=encrypt,
        created_at=created_at.isoformat(),
        scope=scope.header() if scope else {"tenants": "all"},
        purpose=purpose,
        secrets=secrets_mode,
        duration=time.monotonic() - started,
        withheld_files=withheld,
        notes=notes,
    )
    for path in withheld:
        logger.warning("Settings file %s was withheld from backup %s: it holds secret-looking keys and the backup "
                       "is not encrypted (use --encrypt to keep it).", path, result.name)
    logger.info("Backup %s written: %s bytes, %s", result.name, result.size, result.counts)
    return result


def _write_table(engine: Engine, writer: BackupWriter, spec: dataset.TableSpec,
                 columns: list[dict[str, Any]], total: int, progress: ProgressCallback,
                 where: tuple[str, Sequence[Any]] = ("", ())) -> None:
    writer.begin_table(spec.name, columns, sequence=engine.get_sequence(spec.name))
    done = 0
    progress(ProgressEvent("backup", spec.name, 0, total))
    for rows in engine.read_rows(spec, [c["name"] for c in columns], batch_size=backup_settings.BATCH_SIZE,
                                 where=where[0], params=where[1]):
        done += writer.rows(rows)
        progress(ProgressEvent("backup", spec.name, done, total))
    writer.end_table(sequence=engine.get_sequence(spec.name))
    progress(ProgressEvent("backup", spec.name, done, total, finished=True))


# -- reading helpers -------------------------------------------------------------------------------------
@contextmanager
def _opened(source: Source, *, strict: bool,
            identity: str | os.PathLike[str] | None = None) -> Iterator[BackupReader]:
    handle = source.open()
    try:
        with open_backup(handle, strict=strict, identity=identity) as reader:
            yield reader
    finally:
        handle.close()


def _resolve(file: str, identity: str | os.PathLike[str] | None = None, *, database: str = "default") -> Source:
    storage = _storage()
    return resolve_source(file, storage, latest=lambda: _latest_name(identity, database=database))


def _latest_name(identity: str | os.PathLike[str] | None = None, *, database: str = "default") -> str | None:
    target = origin.of_alias(database)
    entries = [e for e in backup_list(identity=identity) if e.trusted and e.purpose != "safety"
               and not tenant_scope.is_tenant_backup({"scope": e.scope}) and e.belongs_to(target)]
    return entries[0].name if entries else None


def latest_backup_name(*, database: str = "default", identity: str | os.PathLike[str] | None = None) -> str | None:
    """The name ``latest`` stands for with ``--database database``: its newest full, non-safety backup."""
    return _latest_name(identity, database=database)


# -- validate --------------------------------------------------------------------------------------------
@history.recorded("validate", outcome=validation.job_outcome)
def backup_validate(*, file: str, identity: str | os.PathLike[str] | None = None,
                    target_engine: str | None = None, database: str | None = None,
                    progress: ProgressCallback = silent) -> ValidationReport:
    """Read the whole file once: structure, checksums, counts, types, NOT NULL, unique and foreign keys.

    With ``target_engine`` (sqlite, postgresql or mysql), also every value that engine would refuse (an
    infinity on MariaDB, text longer than its column, ...), judged by the columns of ``database`` when that
    alias is such a database holding the tables, else by the schema this app ships for the engine.
    An encrypted file needs an age identity (``identity``, else ADCP_BACKUP_AGE_IDENTITY); without a
    fitting one this raises EncryptionKeyError: the file's validity is then unknown, not disproved."""
    if target_engine is not None and target_engine not in limits.ENGINES:
        raise BackupError(f"Unknown target engine {target_engine!r}: use {', '.join(limits.ENGINES)}.")
    live = get_engine(database) if target_engine is not None and database is not None else None
    source = _resolve(file, identity, database=database or backup_settings.default_database)
    report = validation.validate_file(lambda: _opened(source, strict=False, identity=identity), name=source.name,
                                      path=source.path, target_engine=target_engine, live=live, progress=progress)
    logger.info("Validated %s: %s, %s", source.display,
                "valid" if report.valid else f"{report.problems_total} problem(s)",
                signing.LABELS.get(report.provenance, report.provenance))
    return report


# -- list and info ---------------------------------------------------------------------------------------
def backup_list(*, limit: int | None = None, identity: str | os.PathLike[str] | None = None,
                database: str | None = None) -> list[BackupEntry]:
    """Every backup in the storage, newest first, described from its header (never from its name).

    With ``database`` (an alias): only the backups that belong to it (``BackupEntry.belongs_to``).
    An encrypted file that no available identity opens is listed as encrypted, without counts."""
    storage = _storage()
    target = origin.of_alias(database) if database is not None else None
    entries = [_describe(storage, name, identity) for name in storage.names()]
    if target is not None:
        entries = [e for e in entries if e.belongs_to(target)]
    epoch = datetime.min.replace(tzinfo=UTC)
    entries.sort(key=lambda e: (e.created or epoch, e.name), reverse=True)
    return entries[:limit] if limit else entries


def _describe(storage: BackupStorage, name: str, identity: str | os.PathLike[str] | None = None) -> BackupEntry:
    size = storage.size(name)
    path = storage.path(name)
    handle: IO[bytes] | None = None
    try:
        handle = storage.open(name)
        with open_backup(handle, strict=True, identity=identity) as reader:
            counts = reader.header.get("counts")
            if not isinstance(reader, NativeReader) and (not counts or None in counts.values()):
                counts = _count_rows(reader)  # legacy v1 files announce no counts: read them
            # A native header's shape was checked when it was read (an invalid one raised InvalidBackup).
        header = reader.header
        provenance = _header_provenance(reader, name)
        return BackupEntry(
            name=name,
            created_at=header.get("created_at"),
            size=size,
            format=reader.format,
            compression=reader.compression,
            encrypted=reader.encrypted,
            counts=counts,
            scope=header.get("scope"),
            purpose=header.get("purpose"),
            path=path,
            source=header.get("source") if isinstance(header.get("source"), dict) else None,
            provenance=provenance.status,
            provenance_note=provenance.note,
            uploaded=name.startswith(UPLOAD_PREFIX),
            future_dated=is_future(parse_time(header.get("created_at"))),
        )
    except EncryptionKeyError:
        provenance, named_time = signing.verify_name(name)
        created = named_time or storage.modified(name)
        return BackupEntry(name=name, created_at=created.isoformat() if created else None, size=size,
                           format="adcp-backup (encrypted)", compression=None, encrypted=True, counts=None,
                           scope=None, purpose=None, path=path, provenance=provenance.status,
                           provenance_note=provenance.note, uploaded=name.startswith(UPLOAD_PREFIX),
                           future_dated=is_future(created))
    except InvalidBackup as exc:
        modified = storage.modified(name)
        return BackupEntry(name=name, created_at=modified.isoformat() if modified else None, size=size,
                           format=None, compression=None, encrypted=False, counts=None, scope=None,
                           purpose=None, path=path, error=str(exc))
    finally:
        if handle is not None:
            handle.close()


def _header_provenance(reader: BackupReader, name: str) -> signing.Provenance:
    if not isinstance(reader, NativeReader):
        return signing.legacy()
    return signing.verify_header(reader.header, name)


def _count_rows(reader: BackupReader) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in reader.events():
        if isinstance(event, TableEnd):
            counts[event.name] = counts.get(event.name, 0) + event.rows
    return counts


def backup_info(*, database: str = "default", max_age: timedelta | None = None,
                identity: str | os.PathLike[str] | None = None,
                max_drill_age: timedelta | None = None) -> InfoResult:
    """The state of the database, the storage and the backups, for people and for monitoring."""
    with history.quiet():  # the validations behind "newest valid backup" are reads, not operations
        return _backup_info(database=database, max_age=max_age, identity=identity, max_drill_age=max_drill_age)


def _backup_info(*, database: str, max_age: timedelta | None, identity: str | os.PathLike[str] | None,
                 max_drill_age: timedelta | None) -> InfoResult:
    from . import drill

    engine = get_engine(database)
    existing = engine.existing_tables()
    tables = {}
    for spec in dataset.tables():
        tables[spec.name] = engine.count(spec.name) if spec.name in existing else None
    settings_dict = connections[database].settings_dict
    storage = _storage()
    target = origin.of_alias(database)
    everything = backup_list(identity=identity)
    entries = [e for e in everything if e.belongs_to(target)]
    usable = [e for e in entries if e.error is None]
    newest, invalid_newer = _newest_valid(usable, identity)
    partials = storage.partial_files()
    now = datetime.now(UTC)
    newest_info = None
    stale = False
    if newest is not None and newest.created is not None:
        age = (now - newest.created).total_seconds()
        newest_info = {"name": newest.name, "created_at": newest.created_at, "age_seconds": round(age, 1),
                       "size": newest.size, "counts": newest.counts}
        stale = max_age is not None and age > max_age.total_seconds()
    elif max_age is not None:
        stale = True
    return InfoResult(
        database={
            "alias": database,
            "engine": engine.vendor,
            "identity": target.as_header(),
            "name": str(settings_dict.get("NAME")),
            "host": settings_dict.get("HOST") or None,
            "tables": tables,
            "missing_tables": [t for t, c in tables.items() if c is None],
            "fts": engine.fts_present() if dataset.FTS_TABLE in existing else False,
        },
        storage={
            "location": storage.location,
            "free_bytes": storage.free_space(),
        },
        backups={
            "count": len(usable),
            "total_size": sum(e.size for e in entries),
            "unreadable": [e.name for e in entries if e.error is not None],
            "safety_backups": sum(1 for e in usable if e.purpose == "safety"),
            "invalid_newer_than_newest": invalid_newer,
            "other_databases": len(everything) - len(entries),
            "untrusted": [{"name": e.name, "provenance": e.provenance, "uploaded": e.uploaded,
                           "future_dated": e.future_dated, "created_at": e.created_at}
                          for e in usable if not e.trusted],
            "partial_files": [{"path": str(p.path), "size": p.size, "age_seconds": round(p.age, 1)}
                              for p in partials],
        },
        newest=newest_info,
        settings={
            "compression": backup_settings.COMPRESSION,
            "settings_files": [str(p) for p in backup_settings.SETTINGS_FILES],
            "environment_variables": backup_settings.ENV_VARS,
            "safety_backup": backup_settings.SAFETY_BACKUP,
            "schedule": monitoring.schedule_info(),
            "retention": monitoring.retention_info(),
            "encryption": {**monitoring.encryption_info(),
                           "encrypted_backups": sum(1 for e in usable if e.encrypted)},
            "lock": monitoring.lock_info(),
        },
        max_age=max_age.total_seconds() if max_age is not None else None,
        stale=stale,
        drill=drill.info(max_drill_age.total_seconds() if max_drill_age is not None else None, database=database),
    )


def _newest_valid(entries: list[BackupEntry],
                  identity: str | os.PathLike[str] | None = None) -> tuple[BackupEntry | None, list[str]]:
    """The newest regular backup that passes validation, and the newer ones that do not (newest first)."""
    invalid: list[str] = []
    for entry in entries:
        if (not entry.trusted or entry.purpose == "safety" or entry.created is None
                or tenant_scope.is_tenant_backup({"scope": entry.scope})):
            continue
        if _passes_validation(entry.name, identity):
            return entry, invalid
        invalid.append(entry.name)
    return None, invalid


def _untrusted_reason(entry: BackupEntry) -> str:
    if entry.future_dated:
        return f"dated in the future ({entry.created_at}): never pruned, never counted as the newest"
    what = "uploaded" if entry.uploaded else signing.LABELS.get(entry.provenance, entry.provenance)
    return f"{what}, not signed here for this name: never pruned ({entry.provenance_note})"


def _passes_validation(name: str, identity: str | os.PathLike[str] | None = None) -> bool:
    """Whether a backup validates and its content is signed here. An encrypted one that no identity here opens
    counts as valid: it cannot be checked on this host (one that writes backups needs only public keys), and
    age checks it on restore."""
    try:
        return backup_validate(file=name, identity=identity).trusted
    except EncryptionKeyError:
        return True


# -- prune -----------------------------------------------------------------------------------------------
def retention_policy(*, keep_last: int | None = None, keep_daily: int | None = None,
                     keep_weekly: int | None = None, keep_monthly: int | None = None) -> tuple[retention.Policy, str]:
    """The rules for regular backups, as restic reads its flags: when any count is given, exactly the counts
    given apply and the others keep nothing; when none is, the ADCP_BACKUP_KEEP_* settings apply."""
    given = (keep_last, keep_daily, keep_weekly, keep_monthly)
    if any(count is not None for count in given):
        last, daily, weekly, monthly = (0 if count is None else count for count in given)
        return retention.Policy(last=last, daily=daily, weekly=weekly, monthly=monthly), POLICY_FROM_FLAGS
    configured = retention.Policy(last=backup_settings.KEEP_LAST, daily=backup_settings.KEEP_DAILY,
                                  weekly=backup_settings.KEEP_WEEKLY, monthly=backup_settings.KEEP_MONTHLY)
    return configured, POLICY_FROM_SETTINGS


@history.recorded("prune")
@signals.reported(signals.backup_pruned, signals.prune_failed)
@locking.locked("prune")
def backup_prune(
    *,
    keep_last: int | None = None,
    keep_daily: int | None = None,
    keep_weekly: int | None = None,
    keep_monthly: int | None = None,
    keep_safety: int | None = None,
    keep_tenant: int | None = None,
    dry_run: bool = False,
    database: str = "default",
) -> PruneResult:
    """Apply the retention rules (restic's) to the backups in storage.

    The four regular rules follow restic's flags: given any of them, only those given apply (``None`` keeps
    nothing by that rule); given none, the ADCP_BACKUP_KEEP_* settings do. ``keep_safety`` and ``keep_tenant``
    are separate: safety backups and tenant backups (of chosen tenants) each have their own rule,
    ADCP_BACKUP_KEEP_SAFETY and ADCP_BACKUP_KEEP_TENANT when it is ``None``."""
    policy, policy_source = retention_policy(keep_last=keep_last, keep_daily=keep_daily, keep_weekly=keep_weekly,
                                             keep_monthly=keep_monthly)
    safety = backup_settings.KEEP_SAFETY if keep_safety is None else keep_safety
    tenant = backup_settings.KEEP_TENANT if keep_tenant is None else keep_tenant
    # Only this installation's own backups of this database are subject to the rules: a file dropped into the
    # storage (uploaded, foreign, future-dated) can neither push a real backup out of a rule nor be deleted by one.
    entries = _prune_candidates(database)
    plan = retention.plan_prune([e for e in entries if e.trusted or e.error is not None], policy,
                                keep_safety=safety, tz=django_timezone.get_default_timezone(),
                                is_valid=lambda entry: _passes_validation(entry.name), keep_tenant=tenant,
                                is_tenant=_is_tenant_backup)
    untrusted = [retention.PrunedFile.of(e, [_untrusted_reason(e)]) for e in entries
                 if e.error is None and not e.trusted]
    notes = ["every --keep-* count is 0: no regular backup is removed"] if policy.empty else []
    storage = _storage()
    partials = [p for p in storage.partial_files() if p.age > backup_settings.PARTIAL_EXPIRY]
    if not dry_run:
        for pruned in plan.removed:
            try:
                storage.delete(pruned.name)
            except OSError as exc:
                raise BackupError(f"Could not delete {pruned.name}: {exc}; the backups after it were kept.") from exc
            logger.info("Pruned %s (created %s)", pruned.name, pruned.created_at)
        for partial in partials:
            partial.remove()
            logger.info("Removed %s, left by an interrupted backup %.0f hours ago", partial.path, partial.age / 3600)
    if partials:
        notes.append(f"{'would remove' if dry_run else 'removed'} {len(partials)} partial file(s) of interrupted "
                     f"backups: {', '.join(str(p.path) for p in partials)}")
    result = PruneResult(dry_run=dry_run, policy={**policy.as_dict(), "keep_safety": safety, "keep_tenant": tenant},
                         kept=plan.kept, removed=plan.removed, skipped=plan.skipped + untrusted,
                         freed_bytes=sum(p.size for p in plan.removed), notes=notes, policy_source=policy_source,
                         partials_removed=[str(p.path) for p in partials])
    logger.info("%s: %s kept, %s removed, %s skipped", "Prune dry run" if dry_run else "Pruned",
                len(result.kept), len(result.removed), len(result.skipped))
    return result


def _is_tenant_backup(entry: retention.Entry) -> bool:
    return isinstance(entry, BackupEntry) and tenant_scope.is_tenant_backup({"scope": entry.scope})


def _prune_candidates(database: str) -> list[BackupEntry]:
    """The backups retention may judge for ``database``: its own. Where several databases share the storage,
    a backup whose origin cannot be read (legacy, or encrypted without a key here) is never removed."""
    target = origin.of_alias(database)
    shared = len(backup_settings.DATABASES) > 1
    return [e for e in backup_list() if e.belongs_to(target) and (e.origin_known or not shared)]


# -- restore ---------------------------------------------------------------------------------------------
def backup_restore_plan(*, file: str, database: str = "default", tenants: Sequence[str] | None = None,
                        identity: str | os.PathLike[str] | None = None,
                        from_other_database: bool = False) -> RestorePlan:
    """What a restore of ``file`` would replace: the file's counts beside the database's, read from headers.

    With ``tenants``: the database's counts are those tenants' rows; the file's are unknown until it is read.
    A backup taken from another database raises OtherDatabase unless ``from_other_database``; the plan's
    ``origin`` says where the backup came from either way."""
    source = _resolve(file, identity, database=database)
    engine = get_engine(database)
    with _opened(source, strict=True, identity=identity) as reader:
        header = reader.header
        fmt = reader.format
        provenance = _header_provenance(reader, source.name)
    came_from = origin.restore_origin(header, database, from_other_database=from_other_database)
    existing = engine.existing_tables()
    signed = {"provenance": provenance.status, "provenance_note": provenance.note}
    file_tables = list((header.get("schema") or {}).get("tables") or dataset.table_names())
    counts = header.get("counts") or {}
    if tenants or tenant_scope.is_tenant_backup(header):
        slugs = list(tenants or (header.get("scope") or {}).get("tenants") or [])
        global_parts = [] if tenants else list((header.get("scope") or {}).get("global") or [])
        return RestorePlan(
            name=source.name,
            format=fmt,
            created_at=header.get("created_at"),
            file_counts={t: None if tenants else counts.get(t) for t in file_tables},
            current_counts=dict(tenant_scope.current_counts(engine, slugs)),
            settings_files=[str(p) for p in backup_settings.SETTINGS_FILES] if "settings" in global_parts else [],
            scope={"tenants": slugs, "global": global_parts},
            origin=came_from,
            other_database=came_from["other_database"],
            **signed,
        )
    return RestorePlan(
        name=source.name,
        format=fmt,
        created_at=header.get("created_at"),
        file_counts={t: counts.get(t) for t in file_tables},
        current_counts={t: engine.count(t) if t in existing else None for t in dataset.table_names()},
        settings_files=[str(p) for p in backup_settings.SETTINGS_FILES],
        scope=header.get("scope") or {"tenants": "all"},
        origin=came_from,
        other_database=came_from["other_database"],
        **signed,
    )


@history.recorded("restore")
@signals.reported(signals.restore_finished, signals.restore_failed)
@locking.locked("restore")
def backup_restore(
    *,
    file: str,
    database: str = "default",
    skip_validation: bool = False,
    dry_run: bool = False,
    create_schema: bool = False,
    safety_backup: bool | None = None,
    restore_settings: bool = True,
    tenants: Sequence[str] | None = None,
    identity: str | os.PathLike[str] | None = None,
    allow_unsigned: bool = False,
    progress: ProgressCallback = silent,
    from_other_database: bool = False,
) -> RestoreResult:
    """Replace the AdCP tables (and settings files) with a backup's, in one transaction, or change nothing.

    With ``tenants`` (slugs), or for a tenant backup, only those tenants' rows are replaced (see scope.py).
    An encrypted file is decrypted while it is read, with ``identity`` (else ADCP_BACKUP_AGE_IDENTITY).
    A backup taken from another database (adcp_backup.origin) is refused unless ``from_other_database``.
    A file this installation did not sign is refused (UnsignedBackup) unless ``allow_unsigned``; a dry run
    of one goes ahead, as it changes nothing."""
    started = time.monotonic()
    source = _resolve(file, identity, database=database)
    engine = get_engine(database)
    if safety_backup is not False or restore_settings:  # else nothing is written before the real pass, which checks
        # the records too (a restore drill: a scratch database, no safety backup, no settings files)
        _check_settings_records(source, identity, restore_settings=restore_settings, tenants=tenants)
    with _opened(source, strict=True, identity=identity) as reader:
        header = reader.header
        validation.require_sound_header(header)  # before anything the header names is used
        # Settings-file records are checked as they stream past, inside the transaction: a bad one rolls it back.
        settings_targets = _writes_settings(header, restore_settings=restore_settings, tenants=tenants)
        came_from = origin.restore_origin(header, database, from_other_database=from_other_database)
        _require_signature(reader, source, identity, allowed=allow_unsigned or dry_run)
        want_safety = backup_settings.SAFETY_BACKUP if safety_backup is None else safety_backup
        safety = functools.partial(_safety_backup, database, progress) if want_safety else None
        try:
            if tenants or tenant_scope.is_tenant_backup(header):
                outcome = tenant_scope.restore_tenants(engine=engine, reader=reader, slugs=tenants,
                                                       create_schema=create_schema, dry_run=dry_run,
                                                       validate=not skip_validation,
                                                       settings_targets=settings_targets, safety_backup=safety,
                                                       progress=progress)
            else:
                outcome = restore.restore_whole(engine, reader, create_schema=create_schema, dry_run=dry_run,
                                                validate=not skip_validation,
                                                settings_targets=settings_targets, safety_backup=safety,
                                                progress=progress)
        except ValuesRefused as exc:
            raise _every_value_refused(exc, file=file, identity=identity, engine=engine, dry_run=dry_run) from exc
        except DatabaseError as exc:
            raise RestoreError(f"The restore failed and was rolled back; the database is unchanged. ({exc})") from exc

    files: list[dict[str, str]] = []
    if restore_settings:
        files = restore.restore_files(outcome.files, dry_run=dry_run, name=source.name, restored=outcome.restored)
    result = RestoreResult(
        name=source.name,
        format=reader.format,
        restored=outcome.restored,
        dry_run=dry_run,
        safety_backup=outcome.safety_backup,
        changes=outcome.changes,
        defaulted=outcome.defaulted,
        files=files,
        environment=outcome.environment,
        schema_created=outcome.schema_created,
        notes=[*outcome.notes, *_provenance_notes(reader)],
        duration=time.monotonic() - started,
        origin=came_from,
    )
    scoped = f" (tenants {', '.join(outcome.tenants)})" if outcome.tenants else ""
    logger.info("%s %s%s into %r: %s", "Dry run of" if dry_run else "Restored", source.display, scoped, database,
                result.restored)
    return result


def _require_signature(reader: BackupReader, source: Source, identity: str | os.PathLike[str] | None, *,
                       allowed: bool) -> None:
    """Refuse, before anything is written, a file that cannot be signed here; have the reader refuse one whose
    trailer MAC fails (the restore's transaction then rolls back). ``allowed``: --allow-unsigned or a dry run.

    An unsigned file that is also invalid is reported as invalid (exit 2), so it is validated first."""
    if allowed:
        return
    if isinstance(reader, NativeReader) and reader.header.get("signature") is not None:
        reader.check_provenance = _refuse_unsigned
        return
    report = backup_validate(file=source.path or source.name, identity=identity)
    if not report.valid:
        raise InvalidBackup(report.problems, total=report.problems_total)
    if not isinstance(reader, NativeReader):
        raise UnsignedBackup(f"This is a {reader.format} file: the legacy backup code signed nothing, so nothing "
                             "proves where it came from. Nothing was changed; check the file, then restore it "
                             "with --allow-unsigned.")
    raise UnsignedBackup("This file carries no signature: it was written by another installation or an older "
                         "version, or changed. Nothing was changed; check where it came from, then restore it "
                         "with --allow-unsigned.")


def _refuse_unsigned(provenance: signing.Provenance) -> None:
    """Told a native trailer's verdict during a restore: an unsigned file stops it before it commits."""
    if not provenance.trusted:
        raise UnsignedBackup(f"This file is not signed by this installation ({provenance.note}); "
                             "nothing was changed. Check where it came from, then restore it with "
                             "--allow-unsigned (in the admin: the permission to restore unsigned backups).")


def _provenance_notes(reader: BackupReader) -> list[str]:
    provenance = reader.provenance if isinstance(reader, NativeReader) else signing.legacy()
    if provenance is None or provenance.status == signing.SIGNED:
        return []
    return [f"provenance: {provenance.label} ({provenance.note})"]


def _writes_settings(header: dict[str, Any], *, restore_settings: bool, tenants: Sequence[str] | None) -> bool:
    """Whether this restore writes the settings files (and so needs their folders writable): a full restore does,
    a tenant restore only of a whole tenant backup that holds them."""
    if not restore_settings or tenants:
        return False
    if not tenant_scope.is_tenant_backup(header):
        return True
    return tenant_scope.SETTINGS in ((header.get("scope") or {}).get("global") or [])


def _check_settings_records(source: Source, identity: str | os.PathLike[str] | None, *, restore_settings: bool,
                            tenants: Sequence[str] | None) -> None:
    """Refuse a file with an unsound settings-file record, or a target that cannot be written, before anything
    is written (the safety backup included). A native file's records are found by a quick pass that skips its
    rows; a legacy file's are made by its reader from fixed paths, and are checked on the real pass only."""
    with _opened(source, strict=False, identity=identity) as reader:
        if not isinstance(reader, NativeReader):
            return

        def readable_records() -> Iterator[FileRecord]:
            try:
                yield from reader.file_records()
            except InvalidBackup:
                return  # a damaged stream or an endless line: the real pass reports it where it is

        targets = _writes_settings(reader.header, restore_settings=restore_settings, tenants=tenants)
        settings_files.refuse_unsound(readable_records(), targets=targets)
        damaged = [p for p in reader.problems if p.section.startswith("file")]  # bad base64 or checksum
        if damaged:
            raise InvalidBackup(damaged)


def _every_value_refused(exc: ValuesRefused, *, file: str, identity: str | os.PathLike[str] | None,
                         engine: Engine, dry_run: bool) -> ValuesRefused:
    """A real restore names the first value the database refused; a dry run reads on and names every one."""
    if not dry_run:
        return exc
    report = backup_validate(file=file, identity=identity, target_engine=engine.vendor, database=engine.alias)
    if not report.problems:
        return exc
    return limits.every_refusal(report.problems, engine.vendor, total=report.problems_total)


def _safety_backup(database: str, progress: ProgressCallback, tenants: list[str] | None,
                   with_global: tuple[str, ...]) -> str:
    """The safety backup a restore takes of what it replaces: every table, or some tenants' rows."""
    progress(ProgressEvent("safety backup", message="Taking a safety backup of the current data..."))
    name = backup_create(database=database, purpose="safety", tenants=tenants, with_global=list(with_global) or None,
                         progress=silent).name
    progress(ProgressEvent("safety backup", message=f"Safety backup written: {name}"))
    return name


def backup_file_tenants(*, file: str, identity: str | os.PathLike[str] | None = None,
                        database: str = "default") -> list[dict[str, Any]]:
    """The tenants a backup holds ({"id", "slug", "name", "products"}), read in one streaming pass."""
    source = _resolve(file, identity, database=database)
    with _opened(source, strict=True, identity=identity) as reader:
        return tenant_scope.file_tenants(reader)


# -- delete and upload -----------------------------------------------------------------------------------
@history.recorded("delete")
@signals.reported(signals.backup_deleted, signals.delete_failed)
@locking.locked("prune")
def backup_delete(*, name: str, database: str = "default") -> DeleteResult:
    """Delete one backup from the storage, under the same lock as a prune (never during a restore)."""
    storage = _storage()
    name = storage.require(name)
    size = storage.size(name)
    try:
        storage.delete(name)
    except OSError as exc:
        raise BackupError(f"The backup {name} could not be deleted: {exc.strerror or exc}.") from exc
    logger.info("Deleted %s (%s bytes)", name, size)
    return DeleteResult(name=name, size=size)


@history.recorded("upload", outcome=validation.job_outcome)
@signals.reported(signals.upload_accepted, signals.upload_refused)
@locking.locked("backup")
def backup_accept_upload(*, quarantined: str | os.PathLike[str], name: str, database: str = "default",
                         progress: ProgressCallback = silent) -> ValidationReport:
    """Validate an uploaded file waiting in quarantine and, when valid, store it under ``name``.

    The quarantined file is removed in every case; an invalid one is reported, never stored."""
    path = Path(quarantined)
    try:
        storage = _storage()
        if storage.exists(name):
            raise BackupError(f"A backup named {name} exists already; the upload was not kept.")
        with history.quiet():
            report = backup_validate(file=str(path), progress=progress)
        report = replace(report, name=name, path=None)
        if report.valid:
            progress(ProgressEvent("upload", message="Valid; storing it with the backups."))
            with path.open("rb") as handle:
                storage.save_upload(name, stream_file(handle))
            report = replace(report, path=storage.path(name))
            logger.info("Upload stored as %s", name)
        return report
    finally:
        path.unlink(missing_ok=True)


# -- drill -----------------------------------------------------------------------------------------------
def backup_drill(*, file: str = "latest", database: str = "default",
                 identity: str | os.PathLike[str] | None = None,
                 progress: ProgressCallback = silent) -> DrillResult:
    """Prove that a backup restores: restore it into a scratch database of ``database``'s engine with the real
    restore pipeline, read it back and compare it with the file, remove the scratch database (see drill.py).

    Returns a result whose ``restorable`` says whether it did; raises BackupError when the drill cannot run.
    Sends ``drill_finished`` or ``drill_failed``. The live database is neither written nor locked: the restore
    runs without the live lock and without the restore signals, which belong to real restores."""
    from . import drill

    arguments = {"file": file, "database": database}
    try:
        source = _resolve(file, identity, database=database)
        result = drill.run(
            name=source.name,
            file=source.name if source.in_storage else str(source.path),
            database=database,
            identity=identity,
            # A scratch database, never the live one, and another database than the backup's by design: a file
            # not signed here may be drilled as well.
            restore_into=functools.partial(inspect.unwrap(backup_restore), from_other_database=True,
                                           allow_unsigned=True),
            open_backup=lambda: _opened(source, strict=False, identity=identity),
            progress=progress,
        )
    except Exception as exc:
        if isinstance(exc, BackupError):
            drill.record({"name": file, "restorable": False, "database": database,
                          "finished_at": datetime.now(UTC).isoformat(), "error": str(exc)})
        signals.send(signals.drill_failed, backup_drill, arguments=arguments, result=None, exception=exc)
        raise
    if result.restorable:
        signals.send(signals.drill_finished, backup_drill, arguments=arguments, result=result)
    else:
        signals.send(signals.drill_failed, backup_drill, arguments=arguments, result=result, exception=None)
    return result
