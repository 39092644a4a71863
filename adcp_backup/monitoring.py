"""What backup_info reports about scheduling, retention, encryption and the lock: settings, never secrets."""
from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from . import locking
from .conf import SETTINGS, backup_settings
from .exceptions import BackupConfigurationError
from .schedules import parse_schedule

_ENCRYPTION_WORDS = re.compile(r"ENCRYPT\w*|RECIPIENTS?|IDENTIT(Y|IES)|PASSPHRASE|AGE|KEYS?|KEY_?FILE")


NOT_SCHEDULED = "never: nothing is set to start it (ADCP_BACKUP_SCHEDULED_BY is empty)"


def schedule_info() -> dict[str, Any]:
    """What starts backups and prunes on a timer, and when: the ADCP_BACKUP_*SCHEDULE settings only when Celery
    beat runs them (ADCP_BACKUP_SCHEDULED_BY = "celery"); cron and systemd keep their times to themselves."""
    info: dict[str, Any] = {"celery_broker": bool(getattr(settings, "CELERY_BROKER_URL", ""))}
    try:
        by = backup_settings.SCHEDULED_BY
    except BackupConfigurationError as exc:
        by, info["error"] = "", str(exc)
    info["scheduled_by"] = by or None
    info["notify_admins"] = backup_settings.NOTIFY_ADMINS
    info["admins"] = len(getattr(settings, "ADMINS", []) or [])
    if by != "celery":
        description = f"started by {by} (its times are in its own configuration)" if by else NOT_SCHEDULED
        for key in ("backup", "prune", "drill"):
            info[key] = {"setting": None, "description": description}
        return info
    for key, setting in (("backup", "SCHEDULE"), ("prune", "PRUNE_SCHEDULE"), ("drill", "DRILL_SCHEDULE")):
        text = getattr(backup_settings, setting)
        try:
            parsed = parse_schedule(text, setting=f"ADCP_BACKUP_{setting}")
        except BackupConfigurationError as exc:
            info[key] = {"setting": text, "error": str(exc)}
            continue
        info[key] = {"setting": text, "description": f"Celery beat, {parsed.describe()}" if parsed else "never"}
    return info


def retention_info() -> dict[str, Any]:
    return {
        "keep_last": backup_settings.KEEP_LAST,
        "keep_daily": backup_settings.KEEP_DAILY,
        "keep_weekly": backup_settings.KEEP_WEEKLY,
        "keep_monthly": backup_settings.KEEP_MONTHLY,
        "keep_safety": backup_settings.KEEP_SAFETY,
    }


def encryption_info() -> dict[str, Any]:
    """Each encryption setting as on/off or set/not set: a key or recipient itself is never shown."""
    shown: dict[str, Any] = {}
    for name in SETTINGS:
        if not any(_ENCRYPTION_WORDS.fullmatch(word) for word in name.split("_")):
            continue
        try:
            value = getattr(backup_settings, name)
        except BackupConfigurationError:
            shown[f"ADCP_BACKUP_{name}"] = "invalid"  # the system checks say why
            continue
        shown[f"ADCP_BACKUP_{name}"] = value if isinstance(value, bool) else ("set" if value else "not set")
    return {"settings": shown}


def lock_info() -> dict[str, Any]:
    holder = locking.current_holder()
    return {
        "file": str(locking.lock_path()),
        "timeout_seconds": backup_settings.LOCK_TIMEOUT,
        "held_by": None if holder is None else {"kind": holder.kind, "pid": holder.pid, "host": holder.host,
                                                 "since": holder.since, "database": holder.database},
    }
