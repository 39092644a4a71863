"""Reads the legacy application's backup files (v2.0 comprehensive, v1.0 full_backup, v1.0 csv_backup), streaming."""
from __future__ import annotations

import json
import logging
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, TypeVar

from .errors import InvalidBackup, Problem, ProblemLog
from .events import End, EnvironmentRecord, Event, FileRecord, RowBatch, TableEnd, TableStart
from .families import BOOLEAN, DATETIME, FLOAT, TableLayout
from .optional import require
from .reader import DEFAULT_LIMITS, ReadLimits

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

V2, V1_FULL, V1_CSV = "legacy v2.0", "legacy v1.0 full_backup", "legacy v1.0 csv_backup"

# The first key of the top-level object tells the three formats apart; nothing is taken from the file name.
_FIRST_KEY = re.compile(rb'\A\s*\{\s*"([A-Za-z_]+)"\s*:')
_FORMAT_BY_FIRST_KEY = {b"backup_metadata": V2, b"exported_at": V1_FULL, b"export_timestamp": V1_CSV}

# Section of the file -> table of the registry.
_TABLE_SECTIONS = {
    "tenants": "tenant",
    "products": "product",
    "external_agents": "externalagent",
    "product_embeddings": "product_embeddings",
}
_COUNT_KEYS = {"tenants": "tenant", "products": "product", "external_agents": "externalagent",
               "embeddings": "product_embeddings"}
# Columns a csv_backup carries; the other columns of these tables take the application's defaults.
_CSV_COLUMNS = {
    "tenant": ("id", "name", "slug", "created_at"),
    "product": ("id", "tenant_id", "name", "description", "price_cpm", "delivery_type", "formats_json",
                "targeting_json", "created_at"),
}
# v1.0 full_backup: app_settings is a flat copy of these environment variables, under lower-case names.
_V1_ENV_NAMES = {
    "gemini_api_key": "GEMINI_API_KEY",
    "embeddings_provider": "EMBEDDINGS_PROVIDER",
    "embeddings_model": "EMBEDDINGS_MODEL",
    "emb_concurrency": "EMB_CONCURRENCY",
    "emb_batch_size": "EMB_BATCH_SIZE",
    "rag_top_k": "RAG_TOP_K",
    "orchestrator_timeout": "ORCH_TIMEOUT_MS_DEFAULT",
    "orchestrator_concurrency": "ORCH_CONCURRENCY",
    "circuit_breaker_fails": "CB_FAILS",
    "circuit_breaker_ttl": "CB_TTL_S",
    "mcp_session_ttl": "MCP_SESSION_TTL_S",
}
# The shape the legacy tool wrapped around app_settings.json each time it backed it up.
_WRAPPER_KEYS = frozenset({"environment_variables", "file_settings", "export_timestamp"})
_SETTINGS_TIMESTAMPS = ("export_timestamp", "exported_at")
APP_SETTINGS_PATH = "data/app_settings.json"
TENANT_SETTINGS_PATH = "data/tenant_settings.json"

BATCH_SIZE = 2000
# The legacy files nest about six levels deep (settings objects inside the document); far deeper is no AdCP file.
MAX_DEPTH = 100
_SCALARS = frozenset({"null", "boolean", "integer", "double", "number", "string"})
_END = ("end_of_file", None)


def _ijson() -> Any:
    ijson = require("ijson", needed_for="reading legacy backup files", extra="legacy")
    if ijson.backend != "yajl2_c":  # pragma: no cover - depends on the installation
        logger.warning("ijson uses its %s backend, not the C one (yajl2_c): legacy files will read several "
                       "times slower; install ijson from a wheel to get it.", ijson.backend)
    return ijson


def open_legacy(head: bytes, stream: IO[bytes], *, tables: Sequence[TableLayout], compression: str = "none",
                encrypted: bool = False, strict: bool = True,
                limits: ReadLimits = DEFAULT_LIMITS) -> LegacyReader | None:
    """A reader for a legacy file, or None when ``head`` (its first decompressed bytes) is not one."""
    match = _FIRST_KEY.match(head)
    if match is None or match.group(1) not in _FORMAT_BY_FIRST_KEY:
        return None
    return LegacyReader(stream, _FORMAT_BY_FIRST_KEY[match.group(1)], tables=tables, compression=compression,
                        encrypted=encrypted, strict=strict, limits=limits)


class _Truncated(Exception):
    """The JSON document ended before its last value did."""


# -- value conversions: the legacy encodings back to the values SQLite held ---------------------------------
def _to_01(value: Any) -> Any:
    if value is True:
        return 1
    if value is False:
        return 0
    return value


def _iso_to_sqlite(value: Any) -> Any:
    """``isoformat()`` text back to the stored text: a space, and the six fraction digits the application
    (SQLAlchemy's SQLite DATETIME) always writes, which ``isoformat()`` drops when they are all zero."""
    if type(value) is not str or len(value) < 19 or value[10] != "T":
        return value
    text = value[:10] + " " + value[11:]
    return text + ".000000" if len(text) == 19 else text


def _floats_to_blob(value: Any) -> Any:
    if type(value) is not list:
        return value
    try:
        return struct.pack(f"<{len(value)}f", *value)
    except (struct.error, TypeError, OverflowError):
        return value  # left as it is: the row check names the column and the row


def _hex_to_blob(value: Any) -> Any:
    if type(value) is not str:
        return value
    try:
        return bytes.fromhex(value)
    except ValueError:
        return value


def _to_float(value: Any) -> Any:
    if type(value) is int:
        return float(value)
    return value


def _csv_int(value: Any) -> Any:
    if type(value) is str and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _csv_float(value: Any) -> Any:
    if type(value) is str:
        try:
            return float(value)
        except ValueError:
            return value
    return _to_float(value)


def _csv_text_or_null(value: Any) -> Any:
    return None if value == "" else value


def _converters(fmt: str, spec: TableLayout) -> dict[str, Callable[[Any], Any]]:
    table = spec.name
    conv: dict[str, Callable[[Any], Any]] = {}
    for column in spec.columns:
        if column.family == BOOLEAN:
            conv[column.name] = _to_01
        elif column.family == FLOAT:
            conv[column.name] = _to_float
        elif column.family == DATETIME and fmt != V2 and table != "product_embeddings":
            conv[column.name] = _iso_to_sqlite
    if table == "product_embeddings":
        conv["is_stale"] = _to_01
        conv["embedding"] = _floats_to_blob if fmt == V2 else _hex_to_blob
    if fmt == V1_CSV:
        conv["id"] = _csv_int
        if table == "product":
            conv["tenant_id"] = _csv_int
            conv["price_cpm"] = _csv_float
            conv["description"] = _csv_text_or_null
    return conv


def unwrap_app_settings(value: Any) -> Any:
    """The real app_settings.json content inside the wrappers the legacy tool nested around it."""
    inner = value.get("file_settings") if isinstance(value, dict) else None
    while isinstance(inner, dict) and "file_settings" in inner and set(inner) <= _WRAPPER_KEYS:
        inner = inner["file_settings"]
    return inner


def settings_bytes(value: Any) -> bytes:
    """Settings as the file the application reads: JSON, indent 2, UTF-8 text, a final newline."""
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# -- the reader ----------------------------------------------------------------------------------------
class LegacyReader:
    """One pass over a legacy JSON document with ijson; rows come out SQLite-shaped, in registry column order.

    ``strict``: raise InvalidBackup at the first problem (restore); otherwise collect them (validate).
    ``tables``: the registry's tables, whose columns (and their order) the rows take.
    """

    def __init__(self, stream: IO[bytes], fmt: str, *, tables: Sequence[TableLayout], compression: str = "none",
                 encrypted: bool = False, strict: bool = True, limits: ReadLimits = DEFAULT_LIMITS) -> None:
        self._specs = {spec.name: spec for spec in tables}
        ijson = _ijson()
        self._ijson_error = ijson.JSONError
        self._tokens = ijson.basic_parse(stream, use_float=True)
        self.format = fmt
        self.compression = compression
        self.encrypted = encrypted
        self.strict = strict
        self.problems = ProblemLog(limits.max_problems)
        self._pending: tuple[str, str, Any] | None = None
        self._finished = False
        metadata = self._guard(self._read_metadata)
        self.header = self._make_header(metadata)

    # -- low level ---------------------------------------------------------------------------------
    def _problem(self, section: str, message: str, row: int | None = None) -> None:
        problem = Problem(section, message, row)
        if self.strict:
            raise InvalidBackup(problem)
        self.problems.add(problem)

    def _guard(self, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except (_Truncated, self._ijson_error) as exc:
            raise self._invalid(exc) from None

    def _invalid(self, exc: Exception) -> InvalidBackup:
        if isinstance(exc, _Truncated):
            return InvalidBackup(Problem("file", "the JSON document ends early: the file is truncated"))
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return InvalidBackup(Problem("file", f"the file is not valid JSON ({first_line})"))

    def _next(self) -> tuple[str, Any]:
        return next(self._tokens, _END)

    def _value(self, event: str, value: Any, depth: int = 1) -> Any:
        """The whole JSON value that starts with ``event``; nesting deeper than MAX_DEPTH makes the file invalid."""
        tokens = self._tokens
        if depth > MAX_DEPTH and event in ("start_map", "start_array"):
            raise InvalidBackup(Problem("file", f"the JSON document nests values more than {MAX_DEPTH} levels "
                                                "deep; no AdCP backup does"))
        if event == "start_map":
            obj: dict[str, Any] = {}
            for ev, key in tokens:
                if ev == "end_map":
                    return obj
                ev, val = next(tokens, _END)
                obj[key] = val if ev in _SCALARS else self._value(ev, val, depth + 1)
            raise _Truncated
        if event == "start_array":
            items: list[Any] = []
            for ev, val in tokens:
                if ev == "end_array":
                    return items
                items.append(val if ev in _SCALARS else self._value(ev, val, depth + 1))
            raise _Truncated
        if event == _END[0]:
            raise _Truncated
        return value

    def _skip(self, event: str) -> None:
        if event not in ("start_map", "start_array"):
            if event == _END[0]:
                raise _Truncated
            return
        depth = 1
        for ev, _val in self._tokens:
            if ev in ("start_map", "start_array"):
                depth += 1
            elif ev in ("end_map", "end_array"):
                depth -= 1
                if depth == 0:
                    return
        raise _Truncated

    def _read_metadata(self) -> dict[str, Any]:
        event, _ = self._next()
        if event != "start_map":
            raise _Truncated if event == _END[0] else InvalidBackup(Problem("file", "the file is not a JSON object"))
        metadata: dict[str, Any] = {}
        for key, event, value in self._members():
            if self.format == V2 and key == "backup_metadata":
                metadata = self._value(event, value)
                if not isinstance(metadata, dict):
                    self._problem("backup_metadata", "backup_metadata is not an object")
                    metadata = {}
                return metadata
            if event in _SCALARS and self.format != V2:
                metadata[key] = value
                continue
            self._pending = (key, event, value)
            return metadata
        self._finished = True
        return metadata

    def _members(self) -> Iterator[tuple[str, str, Any]]:
        """The (key, first event, first value) of each remaining member of the top-level object."""
        while True:
            event, key = self._next()
            if event == "end_map":
                return
            if event != "map_key":
                raise _Truncated
            event, value = self._next()
            if event == _END[0]:
                raise _Truncated
            yield key, event, value

    def _make_header(self, metadata: dict[str, Any]) -> dict[str, Any]:
        tables = list(_TABLE_SECTIONS.values()) if self.format != V1_CSV else ["tenant", "product"]
        self._columns = {t: self._format_columns(t) for t in tables}
        if self.format == V2:
            if metadata.get("version") != "2.0":
                self._problem("backup_metadata", f"version {metadata.get('version')!r} where 2.0 was expected")
            data_counts = metadata.get("data_counts")
            announced: dict[str, Any] = data_counts if isinstance(data_counts, dict) else {}
            counts: dict[str, int | None] = {t: None for t in tables}
            for key, table in _COUNT_KEYS.items():
                value = announced.get(key)
                counts[table] = value if type(value) is int else None
            created_at = metadata.get("created_at")
            legacy = {k: metadata.get(k) for k in ("version", "backup_type", "system_info", "data_counts")}
        else:
            if metadata.get("version") != "1.0":
                self._problem("file", f"version {metadata.get('version')!r} where 1.0 was expected")
            counts = {t: None for t in tables}
            created_at = metadata.get("exported_at" if self.format == V1_FULL else "export_timestamp")
            legacy = {"version": metadata.get("version"),
                      "backup_type": "full_backup" if self.format == V1_FULL else "csv_backup"}
        self._announced = counts
        return {
            "created_at": created_at if isinstance(created_at, str) else None,
            "counts": counts,
            "scope": {"tenants": "all"},
            "purpose": "legacy",
            "schema": {
                "engine": "sqlite",
                "tables": {
                    t: [{"name": c.name, "family": c.family, "nullable": c.nullable}
                        for c in self._spec(t).columns if c.name in self._columns[t]]
                    for t in tables
                },
                "ddl": [],
            },
            "legacy": legacy,
        }

    def _spec(self, table: str) -> TableLayout:
        try:
            return self._specs[table]
        except KeyError:
            raise InvalidBackup(Problem("file", f"the table {table!r} of this legacy format is not in the "
                                                "registry")) from None

    def _column_names(self, table: str) -> list[str]:
        return [c.name for c in self._spec(table).columns]

    def _format_columns(self, table: str) -> list[str]:
        names = self._column_names(table)
        if self.format == V1_CSV:
            return [c for c in names if c in _CSV_COLUMNS[table]]
        return names

    # -- events ------------------------------------------------------------------------------------
    def events(self) -> Iterator[Event]:
        try:
            yield from self._body()
        except (_Truncated, self._ijson_error) as exc:
            raise self._invalid(exc) from None

    def _body(self) -> Iterator[Event]:
        counts: dict[str, int] = {}
        app_settings: Any = None
        tenant_settings: Any = None
        feature_flags: Any = None
        environment_config: Any = None
        members = iter(()) if self._finished else self._members()
        pending = [self._pending] if self._pending else []
        for key, event, value in _chain(pending, members):
            if key == "tenants" and self.format == V1_FULL:
                yield from self._nested_tenants(event, value, counts)
            elif key in _TABLE_SECTIONS and _TABLE_SECTIONS[key] in self._columns:
                yield from self._table(key, _TABLE_SECTIONS[key], event, value, counts)
            elif key in _TABLE_SECTIONS:  # a csv_backup's agents and embeddings: always empty lists
                if event == "start_array":
                    extra = self._value(event, value)
                    if extra:
                        self._problem(key, f"a csv_backup holds no {key}, yet this one lists {len(extra)}")
                else:
                    self._skip(event)
            elif key == "app_settings":
                app_settings = self._value(event, value)
            elif key == "tenant_settings":
                tenant_settings = self._value(event, value)
            elif key == "feature_flags":
                feature_flags = self._value(event, value)
            elif key == "environment_config":
                environment_config = self._value(event, value)
            else:
                self._skip(event)
        tail, _ = self._next()
        if tail != _END[0]:
            self._problem("file", "data follows the JSON document")
        for section, table in _TABLE_SECTIONS.items():
            if self.format == V1_FULL and table == "product":
                continue  # nested in tenants
            if table in self._columns and table not in counts:
                self._problem(section, f"the section {section!r} is missing")
        yield from self._settings(app_settings, tenant_settings)
        yield from self._environment(app_settings, feature_flags, environment_config)
        yield End(counts)

    def _row_maker(self, table: str) -> Callable[[dict[str, Any], int], list[Any]]:
        columns = self._columns[table]
        conv = _converters(self.format, self._spec(table))
        pairs = [(c, conv.get(c)) for c in columns]

        def make(obj: dict[str, Any], row: int) -> list[Any]:
            try:
                return [f(obj[c]) if f is not None else obj[c] for c, f in pairs]
            except KeyError:
                missing = [c for c in columns if c not in obj]
                self._problem(table, f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}", row)
                return [f(obj.get(c)) if f is not None else obj.get(c) for c, f in pairs]

        return make

    def _start(self, table: str) -> TableStart:
        families = {c.name: c.family for c in self._spec(table).columns}
        columns = self._columns[table]
        return TableStart(table, list(columns), [families[c] for c in columns],
                          defaulted=[c for c in families if c not in columns])

    def _end(self, table: str, rows: int, counts: dict[str, int]) -> TableEnd:
        counts[table] = rows
        announced = self._announced.get(table)
        # Validation compares the header's counts itself; a restore must stop here, before it commits.
        if self.strict and announced is not None and announced != rows:
            self._problem(table, f"data_counts announces {announced} rows, the file holds {rows}")
        return TableEnd(table, rows)

    def _table(self, section: str, table: str, event: str, value: Any,
               counts: dict[str, int]) -> Iterator[TableStart | RowBatch | TableEnd]:
        if table in counts:
            self._problem(section, f"the section {section!r} appears twice")
        yield self._start(table)
        if event != "start_array":
            self._problem(section, f"{section} is not a list")
            self._skip(event)
            yield self._end(table, 0, counts)
            return
        make = self._row_maker(table)
        batch: list[list[Any]] = []
        first = 1
        row = 0
        for ev, val in self._tokens:
            if ev == "end_array":
                break
            row += 1
            if ev != "start_map":
                self._problem(table, "the entry is not an object", row)
                self._skip(ev)
                if batch:
                    yield RowBatch(table, batch, first)
                batch, first = [], row + 1
                continue
            batch.append(make(self._value(ev, val), row))
            if len(batch) >= BATCH_SIZE:
                yield RowBatch(table, batch, first)
                batch, first = [], row + 1
        else:
            raise _Truncated
        if batch:
            yield RowBatch(table, batch, first)
        yield self._end(table, row, counts)

    def _nested_tenants(self, event: str, value: Any,
                        counts: dict[str, int]) -> Iterator[TableStart | RowBatch | TableEnd]:
        """v1.0 full_backup: each tenant carries its products; tenant rows go out before their products."""
        yield self._start("tenant")
        yield self._start("product")
        if event != "start_array":
            self._problem("tenants", "tenants is not a list")
            self._skip(event)
            yield self._end("tenant", 0, counts)
            yield self._end("product", 0, counts)
            return
        tenant_columns = self._columns["tenant"]
        make_tenant = self._row_maker("tenant")
        make_product = self._row_maker("product")
        batches = _NestedBatches()
        tokens = self._tokens

        for ev, _val in tokens:
            if ev == "end_array":
                break
            batches.tenant_row += 1
            if ev != "start_map":
                self._problem("tenant", "the entry is not an object", batches.tenant_row)
                self._skip(ev)
                yield from batches.flush()
                continue
            fields: dict[str, Any] = {}
            emitted = False
            for ev, key in tokens:
                if ev == "end_map":
                    break
                ev, val = next(tokens, _END)
                if key != "products":
                    fields[key] = val if ev in _SCALARS else self._value(ev, val)
                    continue
                if not emitted and all(c in fields for c in tenant_columns):
                    batches.add_tenant(make_tenant(fields, batches.tenant_row))
                    emitted = True
                if ev != "start_array":
                    self._problem("tenant", "its products are not a list", batches.tenant_row)
                    self._skip(ev)
                    continue
                for pev, pval in tokens:
                    if pev == "end_array":
                        break
                    batches.product_row += 1
                    if pev != "start_map":
                        self._problem("product", "the entry is not an object", batches.product_row)
                        self._skip(pev)
                        yield from batches.flush()
                        continue
                    product = self._value(pev, pval)
                    parent = fields.get("id")
                    if "tenant_id" not in product:
                        product["tenant_id"] = parent
                    elif product["tenant_id"] != parent:
                        self._problem("product", f"tenant_id {product['tenant_id']!r} differs from the id "
                                                 f"{parent!r} of the tenant it is nested in", batches.product_row)
                    batches.add_product(make_product(product, batches.product_row))
                    if emitted and len(batches.products) >= BATCH_SIZE:
                        yield from batches.flush()
                else:
                    raise _Truncated
            else:
                raise _Truncated
            if not emitted:
                batches.add_tenant(make_tenant(fields, batches.tenant_row))
            if len(batches.tenants) >= BATCH_SIZE or len(batches.products) >= BATCH_SIZE:
                yield from batches.flush()
        else:
            raise _Truncated
        yield from batches.flush()
        yield self._end("tenant", batches.tenant_row, counts)
        yield self._end("product", batches.product_row, counts)

    # -- settings and environment ---------------------------------------------------------------------
    def _settings(self, app_settings: Any, tenant_settings: Any) -> Iterator[FileRecord]:
        if self.format == V2 and app_settings is not None:
            if not isinstance(app_settings, dict):
                self._problem("app_settings", "app_settings is not an object")
            else:
                content = unwrap_app_settings(app_settings)
                if content:
                    yield FileRecord(APP_SETTINGS_PATH, settings_bytes(content))
        if tenant_settings is not None:
            if not isinstance(tenant_settings, dict):
                self._problem("tenant_settings", "tenant_settings is not an object")
                return
            content = {k: v for k, v in tenant_settings.items() if k not in _SETTINGS_TIMESTAMPS}
            if content:
                yield FileRecord(TENANT_SETTINGS_PATH, settings_bytes(content))

    def _environment(self, app_settings: Any, feature_flags: Any,
                     environment_config: Any) -> Iterator[EnvironmentRecord]:
        variables: dict[str, str | None] = {}
        if self.format == V2 and isinstance(app_settings, dict):
            captured = app_settings.get("environment_variables")
            if isinstance(captured, dict):
                variables = {str(k): None if v is None else str(v) for k, v in captured.items()}
        elif self.format == V1_FULL and isinstance(app_settings, dict):
            for key, name in _V1_ENV_NAMES.items():
                value = app_settings.get(key)
                if value is not None:
                    variables[name] = str(value)
        if isinstance(environment_config, dict) and isinstance(environment_config.get("database_url"), str):
            variables["DB_URL"] = environment_config["database_url"]
        flags = feature_flags if isinstance(feature_flags, dict) else {}
        if variables or flags:
            yield EnvironmentRecord(variables=variables, redacted=[], feature_flags=flags)


def _chain(first: list[tuple[str, str, Any]], rest: Iterator[tuple[str, str, Any]]) -> Iterator[tuple[str, str, Any]]:
    yield from first
    yield from rest


class _NestedBatches:
    """Pending tenant and product rows of a v1.0 file: tenants go out first, each batch numbered in file order."""

    def __init__(self) -> None:
        self.tenants: list[list[Any]] = []
        self.products: list[list[Any]] = []
        self.tenant_row = 0  # entries seen so far, valid or not
        self.product_row = 0
        self._tenant_first = 1
        self._product_first = 1

    def add_tenant(self, row: list[Any]) -> None:
        if not self.tenants:
            self._tenant_first = self.tenant_row
        self.tenants.append(row)

    def add_product(self, row: list[Any]) -> None:
        if not self.products:
            self._product_first = self.product_row
        self.products.append(row)

    def flush(self) -> Iterator[RowBatch]:
        """The pending rows. Called after a skipped entry too, so that no batch spans a gap in the numbering."""
        if self.tenants:
            yield RowBatch("tenant", self.tenants, self._tenant_first)
            self.tenants = []
        if self.products:
            yield RowBatch("product", self.products, self._product_first)
            self.products = []
