"""System checks: settings of the wrong type, a backup folder that cannot be written or has no fixed place, tables
that are missing.

The warnings (W001, W002) can be silenced like any Django check: SILENCED_SYSTEM_CHECKS = ["adcp_backup.W002"]."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import DatabaseError

from . import dataset
from .conf import SETTINGS, backup_settings
from .exceptions import BackupConfigurationError

E001_BACKUP_DIR = "adcp_backup.E001"
E002_COMPRESSION = "adcp_backup.E002"
W001_MISSING_TABLES = "adcp_backup.W001"
W002_SETTINGS_FILES = "adcp_backup.W002"
E003_SCHEDULE = "adcp_backup.E003"
E004_ENCRYPTION = "adcp_backup.E004"
W003_AGE_IDENTITY = "adcp_backup.W003"
E005_NO_BASE = "adcp_backup.E005"
E006_DATABASES = "adcp_backup.E006"
W004_SECRET_SETTINGS = "adcp_backup.W004"
W005_SIGNING_KEY = "adcp_backup.W005"
E007_SETTING = "adcp_backup.E007"

# Settings whose bad values a check of their own reports, under its own id.
_CHECKED_ON_THEIR_OWN = frozenset({
    "DIR", "STORAGE_ALIAS", "SETTINGS_FILES",  # E005
    "COMPRESSION",  # E002
    "SCHEDULED_BY", "SCHEDULE", "PRUNE_SCHEDULE", "DRILL_SCHEDULE",  # E003
    "DATABASES",  # E006
    "ENCRYPT", "AGE_RECIPIENTS", "AGE_IDENTITY",  # E004
})


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E007 for every other ADCP_BACKUP_* setting whose value is not of its type, before a backup trips on it."""
    messages: list[checks.CheckMessage] = []
    for name in SETTINGS:
        if name in _CHECKED_ON_THEIR_OWN:
            continue
        try:
            getattr(backup_settings, name)
        except BackupConfigurationError as exc:
            messages.append(checks.Error(str(exc), id=E007_SETTING))
    return messages


def check_backup_dir(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from .storage import BackupStorage

    try:
        storage = BackupStorage()
    except BackupConfigurationError as exc:
        return [checks.Error(str(exc), hint="Set ADCP_BACKUP_DIR to an absolute folder, define BASE_DIR in the "
                                            "settings, or configure an 'adcp_backup' storage in STORAGES.",
                             id=E005_NO_BASE)]
    if not storage.is_local:
        return []
    folder = Path(storage.location)
    if folder.exists() and not folder.is_dir():
        return [checks.Error(f"The backup folder {folder} is a file.", hint="Set ADCP_BACKUP_DIR to a folder.",
                             id=E001_BACKUP_DIR)]
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        return [checks.Error(f"The backup folder {folder} cannot be written.",
                             hint="Give this user write access or set ADCP_BACKUP_DIR.", id=E001_BACKUP_DIR)]
    return []


def check_compression(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        _ = backup_settings.COMPRESSION  # raises on a bad value
    except BackupConfigurationError as exc:
        return [checks.Error(str(exc), id=E002_COMPRESSION)]
    return []


def check_schedules(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from .schedules import parse_schedule

    messages: list[checks.CheckMessage] = []
    try:
        _ = backup_settings.SCHEDULED_BY
    except BackupConfigurationError as exc:
        messages.append(checks.Error(str(exc), id=E003_SCHEDULE))
    for name in ("SCHEDULE", "PRUNE_SCHEDULE", "DRILL_SCHEDULE"):
        try:
            parse_schedule(getattr(backup_settings, name), setting=f"ADCP_BACKUP_{name}")
        except BackupConfigurationError as exc:
            messages.append(checks.Error(str(exc), id=E003_SCHEDULE))
    return messages


def check_settings_files(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W002 only for settings files the project configured (ADCP_BACKUP_SETTINGS_FILES is empty by default)."""
    try:
        files = backup_settings.SETTINGS_FILES
    except BackupConfigurationError as exc:
        return [checks.Error(str(exc), id=E005_NO_BASE)]
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        return [checks.Warning(f"Settings files not found (backups will record them as missing): {', '.join(missing)}",
                               hint="Correct or empty ADCP_BACKUP_SETTINGS_FILES, or silence this warning with "
                                    f"SILENCED_SYSTEM_CHECKS = [{W002_SETTINGS_FILES!r}].",
                               id=W002_SETTINGS_FILES)]
    return []


def check_secret_settings_files(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Settings files holding secrets are withheld from backups that are not encrypted: say so before it matters."""
    from .settings_files import secret_keys

    try:
        if backup_settings.ENCRYPT:
            return []
        files = backup_settings.SETTINGS_FILES
    except BackupConfigurationError:
        return []  # E004 and E005 report these settings
    messages: list[checks.CheckMessage] = []
    for path in files:
        try:
            content = path.read_bytes()
        except OSError:
            continue
        found = secret_keys(content)
        if found:
            messages.append(checks.Warning(
                f"The settings file {path} holds secret-looking keys ({', '.join(found[:5])}): backups that are not "
                "encrypted record it as withheld, without its content, and a restore leaves it as it is.",
                hint="Encrypt backups (ADCP_BACKUP_ENCRYPT with ADCP_BACKUP_AGE_RECIPIENTS) to keep it in them.",
                id=W004_SECRET_SETTINGS))
    return messages


def check_signing_key(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django.conf import settings

    try:
        key = backup_settings.SIGNING_KEY or str(getattr(settings, "SECRET_KEY", "") or "")
    except BackupConfigurationError:
        return []  # E007 reports the setting
    if len(key) < 32:
        return [checks.Warning("The backup signing key (ADCP_BACKUP_SIGNING_KEY, else SECRET_KEY) is shorter than "
                               "32 characters: anyone who guesses it can sign backups as this installation.",
                               hint="Set a long random ADCP_BACKUP_SIGNING_KEY (or SECRET_KEY); keep the old one in "
                                    "the fallbacks so existing backups stay recognised.", id=W005_SIGNING_KEY)]
    return []


def check_tables(app_configs: Any = None, *, databases: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W001 for the databases configured as holding the AdCP tables (ADCP_BACKUP_DATABASES), no others."""
    from .db import get_engine

    try:
        configured = backup_settings.DATABASES
    except BackupConfigurationError as exc:
        return [checks.Error(str(exc), id=E006_DATABASES)]
    unknown = [alias for alias in configured if alias not in settings.DATABASES]
    if unknown:
        return [checks.Error(f"ADCP_BACKUP_DATABASES names {', '.join(map(repr, unknown))}, which DATABASES does not "
                             "define.", hint="List aliases of DATABASES in ADCP_BACKUP_DATABASES.", id=E006_DATABASES)]
    hint = ("Set ADCP_BACKUP_DATABASES to the aliases that hold the AdCP tables (default ['default']), or silence "
            f"this warning with SILENCED_SYSTEM_CHECKS = [{W001_MISSING_TABLES!r}].")
    messages: list[checks.CheckMessage] = []
    for alias in databases or []:
        if alias not in configured:
            continue
        try:
            existing = get_engine(alias).existing_tables()
        except (DatabaseError, BackupConfigurationError) as exc:
            messages.append(checks.Warning(f"Cannot inspect database {alias!r}: {exc}", hint=hint,
                                           id=W001_MISSING_TABLES))
            continue
        missing = [t for t in dataset.table_names() if t not in existing]
        if missing:
            messages.append(
                checks.Warning(
                    f"Database {alias!r} lacks the AdCP tables {', '.join(missing)}.",
                    hint=hint + " ('python manage.py adcp_demo' creates a demo AdCP database.)",
                    id=W001_MISSING_TABLES,
                )
            )
    return messages


def check_encryption(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from . import keys

    messages: list[checks.CheckMessage] = []
    try:
        if backup_settings.ENCRYPT:
            keys.configured_recipients()
        elif backup_settings.AGE_RECIPIENTS:
            keys.parse_recipients(backup_settings.AGE_RECIPIENTS)
    except BackupConfigurationError as exc:
        messages.append(checks.Error(str(exc), id=E004_ENCRYPTION))
    try:
        path = backup_settings.AGE_IDENTITY
    except BackupConfigurationError as exc:
        return [*messages, checks.Error(str(exc), id=E004_ENCRYPTION)]
    if path is not None:
        if not path.is_file():
            messages.append(checks.Warning("The age identity file (ADCP_BACKUP_AGE_IDENTITY) does not exist.",
                                           hint="Encrypted backups cannot be restored until it does.",
                                           id=W003_AGE_IDENTITY))
        elif path.stat().st_mode & 0o077:
            messages.append(checks.Warning("The age identity file (ADCP_BACKUP_AGE_IDENTITY) is readable by other "
                                           "users.", hint="chmod 600 it: it decrypts every backup.",
                                           id=W003_AGE_IDENTITY))
    return messages


def register() -> None:
    checks.register(check_settings, "adcp_backup")
    checks.register(check_backup_dir, "adcp_backup")
    checks.register(check_compression, "adcp_backup")
    checks.register(check_settings_files, "adcp_backup")
    checks.register(check_schedules, "adcp_backup")
    checks.register(check_encryption, "adcp_backup")
    checks.register(check_secret_settings_files, "adcp_backup")
    checks.register(check_signing_key, "adcp_backup")
    checks.register(check_tables, "adcp_backup", checks.Tags.database)
