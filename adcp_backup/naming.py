"""Backup names and the times they carry: a fresh name for a new backup, and the checks on a creation time."""
from __future__ import annotations

import secrets
from datetime import UTC, datetime

from . import signing
from .conf import backup_settings
from .format import codecs, crypto

NAME_PREFIX = "adcp-backup-"


def new_backup_name(compression: str, *, now: datetime | None = None, suffix: str = "") -> str:
    """A name that sorts by time and never collides: ``adcp-backup-YYYYMMDD-HHMMSS-<random>.jsonl[...]``."""
    now = now or datetime.now(UTC)
    stem = f"{NAME_PREFIX}{now:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"
    extension = f".jsonl{codecs.SUFFIXES[compression]}{suffix}"
    if suffix == crypto.SUFFIX:  # readable only with an identity: the name itself says who wrote it, and when
        return signing.signed_name(stem, extension)
    return stem + extension


def parse_time(value: str | None) -> datetime | None:
    """An ISO time from a header, naive ones taken as UTC; None for none or a malformed one."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def is_future(created: datetime | None, now: datetime | None = None) -> bool:
    """A creation time more than ADCP_BACKUP_FUTURE_TOLERANCE seconds ahead of now: a clock or a forgery."""
    if created is None:
        return False
    now = now or datetime.now(UTC)
    return (created - now).total_seconds() > backup_settings.FUTURE_TOLERANCE
