"""Legacy backup files written from a database the way the legacy application's code wrote them."""
from __future__ import annotations

import gzip
import json
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db import connections

from adcp_backup import dataset
from adcp_backup.db import get_engine

from .helpers import table_state

LEGACY_ENV = {
    "GEMINI_API_KEY": "AIza-legacy-plain-secret",
    "EMBEDDINGS_PROVIDER": "gemini",
    "RAG_TOP_K": "8",
    "SERVICE_BASE_URL": "https://ops:s3cr3t-pass@adcp.example.com/api",
}
DB_URL = "postgresql://adcp:db-password-123@db.internal:5432/adcp"
HARD_TEXT = 'He said "hi"\n\tthen a back\\slash, café, 東京, 🚀'


def seed_legacy_source(seeded: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Seed the SQLite database with every hard value a legacy file must carry; return its exact state.

    ``seeded`` is the conftest fixture; test modules wrap this in their own ``legacy_source`` fixture."""
    seeded()
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE product SET description = %s WHERE id = 2", [HARD_TEXT])
        cursor.execute("UPDATE product SET description = NULL, formats_json = NULL, targeting_json = NULL "
                       "WHERE id = 3")
        cursor.execute("UPDATE product SET price_cpm = %s WHERE id = 4", [0.1 + 0.2])
        cursor.execute("UPDATE product SET price_cpm = %s WHERE id = 5", [1e-300])
        # A datetime whose fraction is all zeros: isoformat() drops it, the application stores six digits.
        cursor.execute("UPDATE tenant SET created_at = '2025-08-30 07:00:00.000000' WHERE id = 1")
        cursor.execute("UPDATE product SET created_at = '2025-08-30 07:00:01.000000' WHERE id = 6")
        # An embedding whose list is empty (dim 0), and is_stale NULL and 1 among the others.
        cursor.execute("UPDATE product_embeddings SET embedding = x'', dim = 0 WHERE id = 1")
        cursor.execute("SELECT COUNT(*) FROM product_embeddings WHERE is_stale IS NULL")
        assert cursor.fetchone()[0] > 0
        cursor.execute("SELECT COUNT(*) FROM product_embeddings WHERE is_stale = 1")
        assert cursor.fetchone()[0] > 0
        cursor.execute("SELECT COUNT(*) FROM tenant WHERE id NOT IN (SELECT tenant_id FROM product)")
        assert cursor.fetchone()[0] == 1
    return table_state()


def source_rows(alias: str = "default") -> dict[str, list[dict[str, Any]]]:
    """Every row as stored (SQLite text, integers, blobs), as dicts, ordered like the legacy queries."""
    engine = get_engine(alias)
    out: dict[str, list[dict[str, Any]]] = {}
    for spec in dataset.tables():
        rows: list[dict[str, Any]] = []
        for batch in engine.read_rows(spec, spec.column_names, batch_size=1000):
            rows.extend(dict(zip(spec.column_names, row, strict=True)) for row in batch)
        out[spec.name] = rows
    out["product"].sort(key=lambda r: (r["tenant_id"], r["id"]))
    return out


def _iso(text: str | None) -> str | None:
    return None if text is None else datetime.fromisoformat(text).isoformat()


def v2_document(alias: str = "default", *, file_settings: Any = None, tenant_settings: Any = None,
                nesting: int = 2, data_counts: dict[str, int] | None = None) -> dict[str, Any]:
    """The dict the v2.0 code dumped: booleans, float lists, raw SQLite datetime text."""
    rows = source_rows(alias)
    tenants = [dict(r, enable_web_context=bool(r["enable_web_context"])) for r in rows["tenant"]]
    agents = [dict(r, enabled=bool(r["enabled"])) for r in rows["externalagent"]]
    embeddings = []
    for r in rows["product_embeddings"]:
        blob = r["embedding"]
        embeddings.append(dict(r, embedding=list(struct.unpack(f"<{len(blob) // 4}f", blob)),
                               is_stale=bool(r["is_stale"])))
    # Each backup wrapped the app_settings.json it found, which an earlier backup had already wrapped.
    app_file: Any = file_settings if file_settings is not None else {"embeddings_provider": "gemini"}
    for level in range(nesting - 1):
        app_file = {"environment_variables": {"EMBEDDINGS_PROVIDER": "old"}, "file_settings": app_file,
                    "export_timestamp": f"2025-08-2{level}T10:00:00"}
    counts = data_counts or {"tenants": len(tenants), "products": len(rows["product"]),
                             "external_agents": len(agents), "embeddings": len(embeddings)}
    return {
        "backup_metadata": {
            "created_at": "2025-09-02T17:46:46.629000",
            "version": "2.0",
            "backup_type": "comprehensive",
            "system_info": {"hostname": "adcp-prod", "platform": "posix", "python_version": "3.10.12",
                            "backup_tool_version": "2.0"},
            "data_counts": counts,
        },
        "tenants": tenants,
        "products": rows["product"],
        "external_agents": agents,
        "product_embeddings": embeddings,
        "app_settings": {"environment_variables": dict(LEGACY_ENV), "file_settings": app_file,
                         "export_timestamp": "2025-09-02T17:46:46.700000"},
        "tenant_settings": dict(tenant_settings if tenant_settings is not None else {"tenant_prompts": {}},
                                export_timestamp="2025-09-02T17:46:46.710000"),
        "database_schema": {"tables": {"tenant": [[0, "id", "INTEGER", 1, None, 1]]}, "indexes": {},
                            "foreign_keys": {}},
        "fts_tables": {"products_fts": {"exists": True}, "products_fts_data": {"exists": True}},
        "environment_config": {"python_version": "3.10.12", "platform": "posix", "current_directory": "/srv/adcp",
                               "data_directory": "data", "backup_directory": "data/backups",
                               "database_url": DB_URL},
        "feature_flags": {"web_context_enabled": True, "debug_mode": False, "skip_reference_validation": False},
    }


def write_v2(path: Path, document: dict[str, Any], *, compress: bool = True) -> Path:
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if compress:
        path.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def v1_full_document(alias: str = "default") -> dict[str, Any]:
    """The dict the v1.0 full_backup code dumped: products nested per tenant, isoformat, hex embeddings."""
    rows = source_rows(alias)
    tenants = []
    for t in rows["tenant"]:
        products = [dict(p, created_at=_iso(p["created_at"])) for p in rows["product"] if p["tenant_id"] == t["id"]]
        tenants.append(dict(t, enable_web_context=bool(t["enable_web_context"]), created_at=_iso(t["created_at"]),
                            products=products))
    agents = [dict(a, enabled=bool(a["enabled"]), created_at=_iso(a["created_at"])) for a in rows["externalagent"]]
    embeddings = [dict(e, embedding=e["embedding"].hex(), is_stale=1 if e["is_stale"] else 0)
                  for e in rows["product_embeddings"]]
    return {
        "exported_at": "2025-08-31T09:15:02.123456",
        "version": "1.0",
        "tenants": tenants,
        "external_agents": agents,
        "app_settings": {"gemini_api_key": "AIza-v1-plain-secret", "embeddings_provider": "gemini",
                         "embeddings_model": "text-embedding-004", "emb_concurrency": "4", "emb_batch_size": None,
                         "rag_top_k": "8", "orchestrator_timeout": None, "orchestrator_concurrency": None,
                         "circuit_breaker_fails": None, "circuit_breaker_ttl": None, "mcp_session_ttl": None},
        "tenant_settings": {"tenant_prompts": {"publisher-1": "Sell premium."}, "tenant_configurations": {},
                            "exported_at": "2025-08-31T09:15:02.200000"},
        "product_embeddings": embeddings,
    }


def write_v1_full(path: Path, document: dict[str, Any], *, compress: bool = True) -> Path:
    text = json.dumps(document, separators=(",", ":"))
    if compress:
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")
    return path


CSV_TIME = "2025-09-01T12:00:00.250000"


def csv_document(alias: str = "default") -> dict[str, Any]:
    """The dict the csv_backup generator dumped: flat, no prompts or flags, "" for a NULL description."""
    rows = source_rows(alias)
    tenants = [{"id": t["id"], "name": t["name"], "slug": t["slug"], "created_at": CSV_TIME, "updated_at": CSV_TIME}
               for t in rows["tenant"]]
    products = [{"id": p["id"], "tenant_id": p["tenant_id"], "name": p["name"],
                 "description": p["description"] if p["description"] is not None else "",
                 "price_cpm": p["price_cpm"], "delivery_type": p["delivery_type"],
                 "formats_json": p["formats_json"], "targeting_json": p["targeting_json"],
                 "created_at": CSV_TIME, "updated_at": CSV_TIME} for p in rows["product"]]
    return {"export_timestamp": CSV_TIME, "version": "1.0", "tenants": tenants, "products": products,
            "external_agents": [], "app_settings": {}, "tenant_settings": {}}


def write_csv_backup(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path
