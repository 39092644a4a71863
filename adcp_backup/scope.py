"""Tenant scope: which rows belong to chosen tenants, and what a per-tenant restore reads and checks before
the one writer (restore.py) replaces those rows."""
from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any

from . import dataset, models, validation
from .db.base import Engine, fetch_batches
from .exceptions import (
    BackupError,
    Conflict,
    RestoreError,
    TenantConflict,
    UnknownTenant,
)
from .format.events import BackupReader, EnvironmentRecord, Event, FileRecord, RowBatch, TableEnd, TableStart
from .progress import ProgressCallback, ProgressEvent
from .restore import Outcome, SafetyBackup, plan_schema, restore_data
from .validation import ScratchSQLite

logger = logging.getLogger(__name__)

SETTINGS = "settings"  # the --with-global word for the settings files and the environment record
ID_CHUNK = 500  # ids per IN (...) list, well under every engine's parameter limit
MAX_CONFLICTS = 1000


# -- the scope ---------------------------------------------------------------------------------------------
def tenant_table() -> dataset.TableSpec:
    return dataset.table(models.Tenant._meta.db_table)


def global_choices() -> list[str]:
    """What --with-global accepts: every global table of the registry, and the settings."""
    return [spec.name for spec in dataset.tables() if spec.is_global] + [SETTINGS]


def parse_global(values: Iterable[str] | None) -> tuple[str, ...]:
    """Repeated values or comma lists, checked against global_choices(), in the order given."""
    choices = global_choices()
    chosen: list[str] = []
    for value in values or ():
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if part not in choices:
                raise BackupError(f"--with-global takes {', '.join(choices)}; {part!r} is none of them.")
            if part not in chosen:
                chosen.append(part)
    return tuple(chosen)


def clean_slugs(slugs: Iterable[str]) -> tuple[str, ...]:
    cleaned: list[str] = []
    for slug in slugs:
        slug = slug.strip()
        if not slug:
            raise UnknownTenant("An empty tenant slug was given.")
        if slug not in cleaned:
            cleaned.append(slug)
    return tuple(cleaned)


@dataclass(frozen=True)
class TenantScope:
    """Some tenants (by id, with their slugs) and the global parts that go with them."""

    tenant_ids: tuple[int, ...]
    slugs: tuple[str, ...]
    global_parts: tuple[str, ...] = ()

    @property
    def include_settings(self) -> bool:
        return SETTINGS in self.global_parts

    def tables(self) -> list[dataset.TableSpec]:
        """The tables the scope covers, in restore order."""
        return [spec for spec in dataset.tables() if not spec.is_global or spec.name in self.global_parts]

    def header(self) -> dict[str, Any]:
        return {"tenants": list(self.slugs), "tenant_ids": list(self.tenant_ids), "global": list(self.global_parts)}

    def where(self, engine: Engine, spec: dataset.TableSpec) -> tuple[str, list[Any]]:
        """A WHERE clause (with %s placeholders) selecting the scope's rows of a table; empty for global ones."""
        if spec.is_global:
            return "", []
        condition, params = membership(engine, spec, self.tenant_ids)
        return f"WHERE {condition}", params


def membership(engine: Engine, spec: dataset.TableSpec, tenant_ids: Sequence[int]) -> tuple[str, list[Any]]:
    """SQL true for the rows of ``spec`` that belong to these tenants, following tenant_link up to tenant.

    Plain nested subqueries, so the same text runs on SQLite, PostgreSQL and MariaDB."""
    if not tenant_ids:
        raise RestoreError("A tenant scope needs at least one tenant.")
    marks = ", ".join(["%s"] * len(tenant_ids))
    tenant = tenant_table()
    if spec.name == tenant.name:
        return f"{engine.quote(tenant.primary_key)} IN ({marks})", list(tenant_ids)
    if spec.tenant_link is None:
        raise RestoreError(f"The table {spec.name} belongs to no tenant.")
    column, parent_name = spec.tenant_link
    parent = dataset.table(parent_name)
    if parent.name == tenant.name:
        return f"{engine.quote(column)} IN ({marks})", list(tenant_ids)
    ref = next((fk.ref_column for fk in spec.foreign_keys if fk.column == column), parent.primary_key)
    inner, params = membership(engine, parent, tenant_ids)
    return (f"{engine.quote(column)} IN (SELECT {engine.quote(ref)} FROM {engine.quote(parent.name)} "
            f"WHERE {inner})", params)


def where(scope: TenantScope | None, engine: Engine, spec: dataset.TableSpec) -> tuple[str, list[Any]]:
    """The scope's WHERE clause for a table, or none when there is no scope (every row)."""
    return ("", []) if scope is None else scope.where(engine, spec)


def _chunks(values: Sequence[Any], size: int = ID_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _fetch(engine: Engine, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with engine.connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]


def database_tenants(engine: Engine, *, slugs: Sequence[str] = (), ids: Sequence[int] = ()) -> dict[int, str]:
    """Tenant id -> slug in the database, for the given slugs or ids."""
    tenant = tenant_table()
    q = engine.quote
    found: dict[int, str] = {}
    for column, values in (("slug", list(slugs)), (tenant.primary_key, list(ids))):
        for chunk in _chunks(values):
            marks = ", ".join(["%s"] * len(chunk))
            for tenant_id, slug in _fetch(engine, f"SELECT {q(tenant.primary_key)}, {q('slug')} FROM "
                                                  f"{q(tenant.name)} WHERE {q(column)} IN ({marks})", chunk):
                found[int(tenant_id)] = slug
    return found


def for_backup(engine: Engine, *, tenants: Sequence[str] | None,
               with_global: Sequence[str] | None) -> TenantScope | None:
    """The scope of a tenant backup, its slugs resolved in the database; None for a full backup."""
    if not tenants:
        if with_global:
            raise BackupError("--with-global only applies to a tenant backup (with --tenant).")
        return None
    slugs = clean_slugs(tenants)
    found = database_tenants(engine, slugs=slugs)
    by_slug = {slug: tenant_id for tenant_id, slug in found.items()}
    missing = [s for s in slugs if s not in by_slug]
    if missing:
        raise UnknownTenant(f"No tenant has the slug {', '.join(repr(s) for s in missing)} "
                            f"in the database {engine.alias!r}.")
    return TenantScope(tuple(by_slug[s] for s in slugs), slugs, parse_global(with_global))


def is_tenant_backup(header: dict[str, Any]) -> bool:
    return isinstance((header.get("scope") or {}).get("tenants"), list)


def current_counts(engine: Engine, slugs: Sequence[str]) -> dict[str, int]:
    """Rows the database now holds for these tenants (those of them it has), per table."""
    found = database_tenants(engine, slugs=clean_slugs(slugs))
    if not found:
        return {spec.name: 0 for spec in TenantScope((0,), ()).tables()}
    scope = TenantScope(tuple(found), tuple(found.values()))
    return {spec.name: engine.count(spec.name, *scope.where(engine, spec)) for spec in scope.tables()}


# -- reading tenants from a file -----------------------------------------------------------------------------
def file_tenants(reader: BackupReader) -> list[dict[str, Any]]:
    """Every tenant in a backup with its product count, in one streaming pass; only tenants stay in memory."""
    tenant = tenant_table()
    product = next((s for s in dataset.tables() if s.tenant_link and s.tenant_link[1] == tenant.name), None)
    tenants: dict[int, dict[str, Any]] = {}
    positions: tuple[int, ...] | None = None
    link: int | None = None
    for event in reader.events():
        if isinstance(event, TableStart):
            positions, link = None, None
            if event.name == tenant.name:
                missing = [c for c in (tenant.primary_key, "slug", "name") if c not in event.columns]
                if missing:
                    raise BackupError(f"The backup's {tenant.name} table lacks {', '.join(missing)}.")
                positions = tuple(event.columns.index(c) for c in (tenant.primary_key, "slug", "name"))
            elif product is not None and event.name == product.name and product.tenant_link:
                link = event.columns.index(product.tenant_link[0])
        elif isinstance(event, RowBatch):
            if positions is not None:
                for row in event.rows:
                    tenants[row[positions[0]]] = {"id": row[positions[0]], "slug": row[positions[1]],
                                                  "name": row[positions[2]], "products": 0}
            elif link is not None:
                for row in event.rows:
                    entry = tenants.get(row[link])
                    if entry is not None:
                        entry["products"] += 1
    return [tenants[k] for k in sorted(tenants)]


# -- a tenant restore ----------------------------------------------------------------------------------------
class _Spool(ScratchSQLite):
    """The file's rows in scope, kept on disk between the checking pass and the writing transaction.

    A scratch SQLite file holds the ids seen (``a_<table>``: every id of the file, ``m_<table>``: the ids in
    scope); a second scratch file holds the in-scope batches, so the backup is read only once."""

    def __init__(self) -> None:
        super().__init__("adcp-backup-scope-")
        self._rows: IO[bytes] = open(self.folder / "rows.pickle", "w+b")  # noqa: SIM115
        self._made: set[str] = set()
        self.tenants: dict[int, str] = {}  # file tenant id -> slug, for the tenants in scope
        self.file_tenant_ids: set[int] = set()  # every tenant of the file (tenants are few)
        self.conflicts: list[Conflict] = []
        self.seen: set[str] = set()

    def close(self) -> None:
        self._rows.close()
        super().close()

    # -- scratch keys --------------------------------------------------------------------------------
    def _table(self, kind: str, table: str) -> str:
        name = f'"{kind}_{table}"'
        if name not in self._made:
            self.db.execute(f"CREATE TABLE IF NOT EXISTS {name} (id INTEGER PRIMARY KEY)")
            self._made.add(name)
        return name

    def remember(self, kind: str, table: str, ids: Iterable[Any]) -> None:
        self.db.executemany(f"INSERT OR IGNORE INTO {self._table(kind, table)} VALUES (?)", ((i,) for i in ids))

    def known(self, kind: str, table: str, ids: Sequence[Any]) -> set[Any]:
        name = self._table(kind, table)
        present: set[Any] = set()
        for chunk in _chunks(list(ids)):
            marks = ", ".join(["?"] * len(chunk))
            present.update(r[0] for r in self.db.execute(f"SELECT id FROM {name} WHERE id IN ({marks})", chunk))
        return present

    def ids(self, kind: str, table: str) -> Iterator[list[int]]:
        cursor = self.db.execute(f"SELECT id FROM {self._table(kind, table)} ORDER BY id")
        for rows in fetch_batches(cursor, ID_CHUNK):
            yield [r[0] for r in rows]

    # -- spooled events ------------------------------------------------------------------------------
    def dump(self, item: Event) -> None:
        pickle.dump(item, self._rows, protocol=pickle.HIGHEST_PROTOCOL)

    def replay(self) -> Iterator[Event]:
        self._rows.flush()
        self._rows.seek(0)
        while True:
            try:
                yield pickle.load(self._rows)  # noqa: S301 - our own scratch file, written just before
            except EOFError:
                return

    def conflict(self, table: str, row_id: Any, message: str) -> None:
        if len(self.conflicts) < MAX_CONFLICTS:
            self.conflicts.append(Conflict(table, row_id, message))


def _read_file(spool: _Spool, reader: BackupReader, *, slugs: tuple[str, ...] | None, tables: list[dataset.TableSpec],
               keep_settings: bool, settings_targets: bool, progress: ProgressCallback) -> None:
    """The one pass over the backup: picks the rows in scope, spools them, notes orphans."""
    tenant = tenant_table()
    wanted = {spec.name: spec for spec in tables}
    # Rows whose parent is nowhere in the file are flagged in tenant backups, which should hold only rows in
    # scope; in a full backup such rows belong to no tenant, and noting every parent id would cost a full read.
    parents = {spec.tenant_link[1] for spec in dataset.tables() if spec.tenant_link} \
        if is_tenant_backup(reader.header) else set()
    expected = (reader.header.get("counts") or {})
    spec: dataset.TableSpec | None = None
    pk = link = slug_at = -1
    tenant_seen = False
    for event in validation.checked_events(reader, settings_targets=settings_targets):
        if isinstance(event, TableStart):
            spec = wanted.get(event.name)
            spool.seen.add(event.name)
            if spec is None:
                continue
            columns = list(event.columns)
            missing = [c for c in (spec.primary_key, *(spec.tenant_link[:1] if spec.tenant_link else ()))
                       if c not in columns]
            if spec.name == tenant.name and "slug" not in columns:
                missing.append("slug")
            if missing:
                raise RestoreError(f"The backup's {spec.name} table lacks {', '.join(missing)}: "
                                   "its rows cannot be assigned to tenants.")
            pk = columns.index(spec.primary_key)
            link = columns.index(spec.tenant_link[0]) if spec.tenant_link else -1
            slug_at = columns.index("slug") if spec.name == tenant.name else -1
            if spec.tenant_link and spec.tenant_link[1] not in spool.seen:
                raise RestoreError(f"The backup holds {spec.name} before {spec.tenant_link[1]}: a tenant restore "
                                   "needs parent tables first (restore it whole instead).")
            spool.dump(event)
            progress(ProgressEvent("read", spec.name, 0, expected.get(spec.name)))
        elif isinstance(event, RowBatch):
            if spec is None or event.table != spec.name:
                continue
            rows = event.rows
            numbers = range(event.first_row, event.first_row + len(rows))
            if spec.name == tenant.name:
                spool.file_tenant_ids.update(row[pk] for row in rows)
                keep = [k for k, row in enumerate(rows) if slugs is None or row[slug_at] in slugs]
                for k in keep:
                    spool.tenants[rows[k][pk]] = rows[k][slug_at]
            elif spec.tenant_link is not None:
                if spec.name in parents:
                    spool.remember("a", spec.name, (row[pk] for row in rows))
                parent = spec.tenant_link[1]
                values = {row[link] for row in rows}
                if parent == tenant.name:
                    present = values.intersection(spool.tenants)
                    outside = values - present
                    orphans = outside - spool.file_tenant_ids if parents else set()
                else:
                    present = spool.known("m", parent, list(values))
                    outside = values - present
                    orphans = outside - spool.known("a", parent, list(outside)) \
                        if outside and parent in parents else set()
                keep = [k for k, row in enumerate(rows) if row[link] in present] if present else []
                for row in rows if orphans else ():
                    if row[link] in orphans:
                        spool.conflict(spec.name, row[pk], f"its {spec.tenant_link[0]} {row[link]} is not "
                                                           f"in the backup, so it belongs to no restored tenant")
            else:
                keep = list(range(len(rows)))
            if keep:
                if spec.tenant_link is not None or spec.name == tenant.name:
                    spool.remember("m", spec.name, (rows[k][pk] for k in keep))
                spool.dump(RowBatch(spec.name, [rows[k] for k in keep], 1, [numbers[k] for k in keep]))
            progress(ProgressEvent("read", spec.name, numbers[-1] if len(numbers) else 0, expected.get(spec.name)))
        elif isinstance(event, TableEnd):
            if spec is not None and event.name == spec.name:
                spool.dump(event)
                progress(ProgressEvent("read", spec.name, event.rows, event.rows, finished=True))
                if spec.name == tenant.name:
                    tenant_seen = True
            spec = None
        elif isinstance(event, (FileRecord, EnvironmentRecord)):
            if keep_settings:
                spool.dump(event)
    if not tenant_seen:
        raise RestoreError("The backup holds no tenant table: there is no tenant to restore.")
    if slugs is not None:
        missing = [s for s in slugs if s not in spool.tenants.values()]
        if missing:
            raise UnknownTenant(f"The backup holds no tenant with the slug {', '.join(repr(s) for s in missing)}.")


def _database_conflicts(spool: _Spool, engine: Engine, scope: TenantScope) -> None:
    """Rows the file would write whose keys are held, in the database, by rows outside the scope."""
    tenant = tenant_table()
    q = engine.quote
    by_slug = {slug: tenant_id for tenant_id, slug in spool.tenants.items()}
    for db_id, slug in database_tenants(engine, slugs=list(by_slug)).items():
        if db_id != by_slug[slug]:
            spool.conflict(tenant.name, by_slug[slug],
                           f"its slug {slug!r} is used by tenant id {db_id} in the database")
    # The id is the tenant's identity: an id that now carries another slug is most likely another tenant.
    for db_id, slug in database_tenants(engine, ids=list(spool.tenants)).items():
        if slug != spool.tenants[db_id]:
            spool.conflict(tenant.name, db_id, f"the id is tenant {slug!r} in the database, "
                                               f"not {spool.tenants[db_id]!r}")
    for spec in scope.tables():
        if spec.is_global or spec.name == tenant.name or spec.tenant_link is None:
            continue
        column, parent = spec.tenant_link
        condition, params = membership(engine, spec, scope.tenant_ids)
        held: list[tuple[Any, Any]] = []
        for chunk in spool.ids("m", spec.name):
            marks = ", ".join(["%s"] * len(chunk))
            held.extend(_fetch(engine, f"SELECT {q(spec.primary_key)}, {q(column)} FROM {q(spec.name)} "
                                       f"WHERE {q(spec.primary_key)} IN ({marks}) AND NOT ({condition}) "
                                       f"ORDER BY 1", [*chunk, *params]))
        if not held:
            continue
        if parent == tenant.name:
            slugs = database_tenants(engine, ids=sorted({owner for _id, owner in held}))
            for row_id, owner in held:
                spool.conflict(spec.name, row_id, f"the id belongs to tenant {slugs.get(owner, '?')!r} "
                                                  f"(id {owner}) in the database")
        else:
            for row_id, owner in held:
                spool.conflict(spec.name, row_id, f"the id belongs to {parent} {owner} in the database, "
                                                  "which is outside the restored tenants")


def restore_tenants(*, engine: Engine, reader: BackupReader, slugs: Sequence[str] | None, create_schema: bool,
                    dry_run: bool, validate: bool, settings_targets: bool, safety_backup: SafetyBackup | None,
                    progress: ProgressCallback) -> Outcome:
    """Replace the rows of some tenants with a backup's, in one transaction, leaving every other row alone.

    The file is read once, its rows in scope kept on disk while conflicts with other tenants' rows are looked
    for; then restore.restore_data writes them with the scope as its parameter.
    ``slugs`` None restores a tenant backup as it is: its tenants, and the global parts it holds."""
    if create_schema:
        raise RestoreError("--create-schema rebuilds a whole database; it cannot be combined with a tenant restore.")
    plan = plan_schema(engine, reader.header, create_schema=False)
    if plan.create:
        raise RestoreError(f"The database {engine.alias!r} has no AdCP tables: restore a full backup first.")
    header = reader.header
    whole = slugs is None
    if whole and not is_tenant_backup(header):
        raise RestoreError("Name the tenants to restore from a full backup.")
    global_parts = parse_global((header.get("scope") or {}).get("global") or ()) if whole else ()
    wanted = None if whole else clean_slugs(slugs or ())
    file_scope_tables = TenantScope((0,), (), global_parts).tables()
    notes: list[str] = []
    with _Spool() as spool:
        _read_file(spool, reader, slugs=wanted, tables=file_scope_tables, keep_settings=SETTINGS in global_parts,
                   settings_targets=settings_targets, progress=progress)
        if not spool.tenants:
            raise UnknownTenant("The backup holds no tenant to restore.")
        ids = tuple(sorted(spool.tenants))
        scope = TenantScope(ids, tuple(spool.tenants[i] for i in ids), global_parts)
        for part in global_parts:
            if part != SETTINGS and part not in spool.seen:
                notes.append(f"{part}: named in the backup's scope but not in the file; left as it is")
        _database_conflicts(spool, engine, scope)
        if spool.conflicts:
            logger.warning("Tenant restore of %s refused: %d conflict(s), first %s", ", ".join(scope.slugs),
                           len(spool.conflicts), spool.conflicts[0])
            raise TenantConflict(spool.conflicts)

        safety_name = None
        if safety_backup is not None and not dry_run:
            present = database_tenants(engine, ids=scope.tenant_ids)
            if present:
                safety_name = safety_backup([present[i] for i in sorted(present)], global_parts)

        tables = [spec for spec in scope.tables() if not spec.is_global or spec.name in spool.seen]
        outcome = restore_data(engine, spool.replay(), header, replace(plan, tables=tables), scope=scope,
                               dry_run=dry_run, validate=validate, progress=progress)
    outcome.notes[:0] = [*notes, f"tenants restored: {', '.join(scope.slugs)}"]
    outcome.safety_backup = safety_name
    outcome.tenants = scope.slugs
    return outcome


__all__ = ["TenantScope", "membership", "for_backup",
           "restore_tenants", "file_tenants", "global_choices", "parse_global", "is_tenant_backup", "where",
           "current_counts", "database_tenants", "SETTINGS"]
