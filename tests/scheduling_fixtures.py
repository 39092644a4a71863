"""Helpers of the scheduling, retention and locking tests: small real backups with chosen creation times."""
from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path

from adcp_backup import __version__
from adcp_backup.format.writer import BackupWriter

TENANT_COLUMNS = [
    {"name": "id", "family": "integer", "nullable": False},
    {"name": "name", "family": "text", "nullable": False},
    {"name": "slug", "family": "text", "nullable": False},
    {"name": "custom_prompt", "family": "text", "nullable": True},
    {"name": "web_grounding_prompt", "family": "text", "nullable": True},
    {"name": "enable_web_context", "family": "boolean", "nullable": False},
    {"name": "created_at", "family": "datetime", "nullable": False},
]


def write_backup(folder: Path, created_at: datetime, *, purpose: str = "manual", name: str | None = None,
                 truncated: bool = False) -> str:
    """A native v3 backup of one tenant row, named so that its name says nothing true about its time."""
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"adcp-backup-{secrets.token_hex(6)}.jsonl"
    with open(folder / name, "wb") as out:
        writer = BackupWriter(out)
        writer.header({
            "created_at": created_at.isoformat(),
            "tool": f"adcp-backup {__version__}",
            "source": {"engine": "sqlite", "alias": "default"},
            "scope": {"tenants": "all"},
            "purpose": purpose,
            "counts": {"tenant": 1},
            "compression": "none",
            "secrets": "redacted",
            "schema": {"engine": "sqlite", "tables": {"tenant": TENANT_COLUMNS}},
        })
        writer.begin_table("tenant", TENANT_COLUMNS)
        writer.rows([[1, "Acme", "acme", None, None, False, "2024-01-01 00:00:00"]])
        writer.end_table()
        if not truncated:
            writer.trailer()
    return name
