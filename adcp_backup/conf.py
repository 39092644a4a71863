"""Every ADCP_BACKUP_* setting in one place: its type, its default and what it does, read at call time."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from .exceptions import BackupConfigurationError

LEGACY_ENV_VARS = (
    "GEMINI_API_KEY",
    "EMBEDDINGS_PROVIDER",
    "EMBEDDINGS_MODEL",
    "EMB_CONCURRENCY",
    "EMB_BATCH_SIZE",
    "RAG_TOP_K",
    "ORCH_TIMEOUT_MS_DEFAULT",
    "ORCH_CONCURRENCY",
    "CB_FAILS",
    "CB_TTL_S",
    "MCP_SESSION_TTL_S",
    "ENABLE_WEB_CONTEXT",
    "WEB_CONTEXT_TIMEOUT_MS",
    "WEB_CONTEXT_MAX_SNIPPETS",
    "GEMINI_MODEL",
    "DEBUG",
    "SERVICE_BASE_URL",
    "SKIP_REFERENCE_VALIDATION",
)


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    doc: str


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("DATABASES", ["default"],
                "Aliases of the databases holding the AdCP tables; the first is the commands' default --database."),
        Setting("DIR", "backups", "Folder of the default file-system backup storage (relative: to BASE_DIR)."),
        Setting("STORAGE_ALIAS", "adcp_backup", "STORAGES alias of the backup storage, when the project defines it."),
        Setting("SETTINGS_FILES", [],
                "Settings files stored byte for byte in every full backup (relative: to BASE_DIR)."),
        Setting("ENV_VARS", list(LEGACY_ENV_VARS), "Environment variables recorded in every full backup."),
        Setting("SECRET_PATTERNS", ["KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL",
                                    "_PASS", "_PWD", "_DSN"],
                "Substrings that mark an environment variable's value (or a settings file's key) as a secret."),
        Setting("COMPRESSION", "gzip", "Compression of backup_create when --compression is not given."),
        Setting("GZIP_LEVEL", 1, "gzip level: 1 is four times faster than 6 for a few percent of size."),
        Setting("ZSTD_LEVEL", 3, "zstd level."),
        Setting("BATCH_SIZE", 2000, "Rows fetched or inserted per database round trip."),
        Setting("SAFETY_BACKUP", True, "Take a backup of what a restore replaces, before it replaces it."),
        Setting("VERIFY", True, "Read a new backup back from storage and check its checksum before publishing it."),
        Setting("PROGRESS_INTERVAL", 5.0, "Seconds between progress lines when stderr is not a terminal."),
        Setting("MAX_PROBLEMS", 100, "Problems a validation lists; the rest are counted, not kept."),
        Setting("MAX_LINE_LENGTH", 64 * 1024**2,
                "Longest line, in bytes, a backup file may hold (at least 1 MiB); a longer one makes it invalid."),
        Setting("ADMIN_RESTORE", True, "Offer restore and upload in the admin; False leaves restores to the shell."),
        Setting("UPLOAD_MAX_SIZE", 2 * 1024**3, "Largest backup file, in bytes, the admin accepts as an upload."),
        Setting("JOB_STALE_AFTER", 300, "Seconds without a heartbeat after which an unfinished job is marked failed "
                                        "and stops blocking (a job whose process is gone is marked at once)."),
        Setting("JOB_HEARTBEAT", 15.0, "Seconds between the heartbeats a running job records."),
        Setting("ADMIN_DATABASES", [], "Database aliases the admin's Backups page manages (default: "
                                       "ADCP_BACKUP_DATABASES); with several, the page offers a choice."),
        Setting("JOB_RUNNER", "auto", "Where admin jobs run: auto (Celery when a broker is set), celery or thread."),
        Setting("SCHEDULE", "0 2 * * *",
                "When Celery beat runs a backup: a crontab line, @daily-style alias, @every 6h, or empty for never."),
        Setting("PRUNE_SCHEDULE", "30 3 * * *", "When Celery beat applies the retention rules; same syntax."),
        Setting("SCHEDULED_BY", "",
                "What starts scheduled backups: celery (beat with the app's entries), cron, systemd, or empty for "
                "nothing; backup_info shows a schedule only when it is set."),
        Setting("KEEP_LAST", 7, "backup_prune keeps the newest N backups."),
        Setting("KEEP_DAILY", 14, "backup_prune keeps the newest backup of each of the last N days that have one."),
        Setting("KEEP_WEEKLY", 8,
                "backup_prune keeps the newest backup of each of the last N ISO weeks that have one."),
        Setting("KEEP_MONTHLY", 12, "backup_prune keeps the newest backup of each of the last N months that have one."),
        Setting("KEEP_SAFETY", 3, "backup_prune keeps the newest N safety backups (taken before restores)."),
        Setting("KEEP_TENANT", 3, "backup_prune keeps the newest N tenant backups (of chosen tenants); they never "
                                  "count towards the rules for whole-database backups."),
        Setting("LOCK_DIR", "", "Folder of the lock file that serialises backups, restores and prunes (default: "
                                "the backup folder)."),
        Setting("LOCK_TIMEOUT", 60.0, "Seconds a backup or prune waits for a running one before failing; restores "
                                      "never wait."),
        Setting("NOTIFY_ADMINS", False, "E-mail the site's ADMINS when a scheduled backup fails."),
        Setting("ENCRYPT", False, "Encrypt every new backup, safety backups included, with age (as --encrypt)."),
        Setting("AGE_RECIPIENTS", [], "age public keys (age1...) new encrypted backups are readable by."),
        Setting("AGE_IDENTITY", "", "Path of the age identity file (age-keygen) that decrypts backups."),
        Setting("SIGNING_KEY", "",
                "Secret that signs every new backup (a MAC over header and trailer); empty: derived from SECRET_KEY."),
        Setting("SIGNING_KEY_FALLBACKS", [],
                "Older signing keys still accepted when verifying (SECRET_KEY_FALLBACKS too, for a derived key)."),
        Setting("FUTURE_TOLERANCE", 300, "Seconds a backup's creation time may lie ahead of now before it is flagged."),
        Setting("PARTIAL_EXPIRY", 24 * 3600,
                "Seconds after which backup_prune removes a .partial file a killed backup left behind."),
        Setting("DRILL_SCHEDULE", "0 4 * * 0",
                "When Celery beat runs a restore drill of the newest backup (default weekly); same syntax."),
        Setting("DRILL_POSTGRESQL_SCRATCH", "database",
                "A drill's scratch on PostgreSQL: database (falls back to schema without CREATEDB), or schema (a "
                "temporary schema in the live database: no CREATE/DROP DATABASE and their checkpoints)."),
        Setting("DRILL_DIR", "", "Folder of a drill's scratch SQLite database (default: the system's temporary "
                                 "folder)."),
        Setting("TEMP_DIR", "",
                "Folder of the temporary file of a backup bound for remote storage (default: the system's)."),
    )
}


SCHEDULERS = ("", "celery", "cron", "systemd")


def resolve_path(value: str | os.PathLike[str], *, setting: str) -> Path:
    """An absolute path for a path setting: relative ones are taken from settings.BASE_DIR, never from the
    working directory, so cron, systemd, a web server and a shell all see the same files."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path.resolve()
    base = getattr(settings, "BASE_DIR", None)
    if not base:
        raise BackupConfigurationError(
            f"{setting} is the relative path {str(value)!r} and the project defines no BASE_DIR to resolve it "
            f"against: set {setting} to an absolute path."
        )
    return (Path(base) / path).resolve()


class BackupSettings:
    """Lazy access: ``backup_settings.DIR`` reads ``settings.ADCP_BACKUP_DIR`` at that moment."""

    def __getattr__(self, name: str) -> Any:
        try:
            setting = SETTINGS[name]
        except KeyError:
            raise AttributeError(name) from None
        return getattr(settings, f"ADCP_BACKUP_{name}", setting.default)

    @property
    def backup_dir(self) -> Path:
        """The backup folder; raises BackupConfigurationError when it is relative and there is no BASE_DIR."""
        return resolve_path(self.DIR, setting="ADCP_BACKUP_DIR")

    @property
    def settings_files(self) -> list[Path]:
        files = self.SETTINGS_FILES
        if isinstance(files, str):
            files = [part for part in files.split(",") if part.strip()]
        return [resolve_path(f, setting="ADCP_BACKUP_SETTINGS_FILES") for f in files]

    def optional_path(self, name: str) -> Path | None:
        """A path setting that may be empty (LOCK_DIR, TEMP_DIR, AGE_IDENTITY), resolved like the others."""
        value = getattr(self, name)
        return resolve_path(value, setting=f"ADCP_BACKUP_{name}") if value else None

    @property
    def databases(self) -> list[str]:
        """The aliases holding the AdCP tables, the default one first."""
        value = self.DATABASES
        aliases = [value] if isinstance(value, str) else list(value or [])
        if not aliases or not all(isinstance(a, str) and a for a in aliases):
            raise BackupConfigurationError("ADCP_BACKUP_DATABASES must be a list of database aliases, such as "
                                           "['default'].")
        return aliases

    @property
    def default_database(self) -> str:
        return self.databases[0]

    @property
    def scheduled_by(self) -> str:
        value = str(self.SCHEDULED_BY or "").lower()
        if value not in SCHEDULERS:
            raise BackupConfigurationError(
                f"ADCP_BACKUP_SCHEDULED_BY must be celery, cron, systemd or empty, not {value!r}."
            )
        return value

    @property
    def compression(self) -> str:
        value = (self.COMPRESSION or "none").lower()
        if value not in ("none", "gzip", "zstd"):
            raise BackupConfigurationError(
                f"ADCP_BACKUP_COMPRESSION must be none, gzip or zstd, not {value!r}."
            )
        return value


backup_settings = BackupSettings()
