"""The shape of a native header: every field the tool reads has the type it expects, or the file is invalid."""
from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

_MAX_TEXT = 1000


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= _MAX_TEXT


def _plain(value: Any) -> bool:
    """Null, or text within bounds, or a port number."""
    return value is None or _text(value) or (type(value) is int and 0 <= value <= 65535)


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def shape_problems(header: dict[str, Any], *, tables: Collection[str]) -> list[str]:
    """What is wrong with the shape of a native header's fields; empty when every one is as the writer makes it.

    Names are compared with ``tables``, the registry's; values are never interpreted beyond their type."""
    problems: list[str] = []

    # A field may be absent (the readers then fall back as for a legacy file); present, it has its one shape.
    created_at = header.get("created_at")
    if created_at is None:
        pass
    elif not isinstance(created_at, str) or not _text(created_at):
        problems.append(f"created_at should be a date and time in text, not {_kind(created_at)}")
    else:
        try:
            datetime.fromisoformat(created_at)
        except ValueError:
            problems.append("created_at is not an ISO 8601 date and time")

    counts = header.get("counts")
    if counts is None:
        pass
    elif not isinstance(counts, dict):
        problems.append(f"counts should be an object of table names and row counts, not {_kind(counts)}")
    else:
        unknown = [str(name)[:80] for name in counts if name not in tables]
        if unknown:
            problems.append(f"counts names unknown tables (not in the registry): {', '.join(map(repr, unknown[:5]))}")
        wrong = [name for name, value in counts.items() if name in tables and not _count(value)]
        for name in wrong:
            problems.append(f"counts of {name} should be a row count, not {_kind(counts[name])}")

    scope = header.get("scope")
    if scope is None:
        pass
    elif not isinstance(scope, dict):
        problems.append(f"scope should be an object, not {_kind(scope)}")
    else:
        tenants = scope.get("tenants")
        if tenants != "all" and not (isinstance(tenants, list) and all(_text(t) for t in tenants)):
            problems.append("scope.tenants should be \"all\" or a list of tenant slugs")
        ids = scope.get("tenant_ids", [])
        if not (isinstance(ids, list) and all(type(i) is int for i in ids)):
            problems.append("scope.tenant_ids should be a list of integers")
        parts = scope.get("global", [])
        if not (isinstance(parts, list) and all(_text(p) for p in parts)):
            problems.append("scope.global should be a list of names")

    for key in ("tool", "purpose", "compression", "secrets"):
        if key in header and header[key] is not None and not _text(header[key]):
            problems.append(f"{key} should be text, not {_kind(header[key])}")
    source = header.get("source")
    if source is not None and not (isinstance(source, dict)
                                   and all(_plain(v) for k, v in source.items() if k != "database")):
        problems.append("source should be an object of texts")
    database = source.get("database") if isinstance(source, dict) else None
    if database is not None and not (isinstance(database, dict) and all(_plain(v) for v in database.values())):
        problems.append("source.database should be an object of texts (the database's engine, name, host, port)")

    schema = header.get("schema")
    if schema is not None:
        problems.extend(_schema_problems(schema))
    return problems


def _schema_problems(schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return [f"schema should be an object, not {_kind(schema)}"]
    problems = []
    tables = schema.get("tables", {})
    if not isinstance(tables, dict):
        problems.append(f"schema.tables should be an object, not {_kind(tables)}")
    else:
        for name, columns in tables.items():
            if not (isinstance(columns, list) and all(
                    isinstance(c, dict) and _text(c.get("name")) and _text(c.get("family"))
                    and isinstance(c.get("nullable", False), bool) for c in columns)):
                problems.append(f"schema.tables.{str(name)[:80]} should be a list of columns "
                                "(each with a name, a family and nullable)")
    ddl = schema.get("ddl", [])
    if not (isinstance(ddl, list) and all(isinstance(statement, str) for statement in ddl)):
        problems.append("schema.ddl should be a list of texts")
    for key in ("engine", "fingerprint"):
        if schema.get(key) is not None and not _text(schema[key]):
            problems.append(f"schema.{key} should be text, not {_kind(schema[key])}")
    if not isinstance(schema.get("fts", False), bool):
        problems.append("schema.fts should be true or false")
    return problems
