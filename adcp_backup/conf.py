"""Every ADCP_BACKUP_* setting in one place: its type, its default and what it does, read at call time."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from django.conf import settings

from .exceptions import BackupConfigurationError

T = TypeVar("T")

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

Parser = Callable[[object, str], T]
"""Turns a setting's value (as the project wrote it) into its type; ``str`` is the setting's full name, for the
error it raises on a value it cannot take."""


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


# -- parsers: each takes the typed value, or the text an environment variable would give ------------------
def _refuse(setting: str, wanted: str, value: object) -> BackupConfigurationError:
    return BackupConfigurationError(f"{setting} must be {wanted}, not {value!r}.")


def _boolean(value: object, setting: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "yes", "on", "1"):
            return True
        if word in ("false", "no", "off", "0", ""):
            return False
    raise _refuse(setting, "True or False", value)


def _integer(*, minimum: int, maximum: int | None = None) -> Parser[int]:
    if maximum is None:
        wanted = f"a whole number of at least {minimum}"
    else:
        wanted = f"a whole number from {minimum} to {maximum}"

    def parse(value: object, setting: str) -> int:
        number: object = value
        if isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                raise _refuse(setting, wanted, value) from None
        if isinstance(number, bool) or not isinstance(number, int) or number < minimum or (
                maximum is not None and number > maximum):
            raise _refuse(setting, wanted, value)
        return number

    return parse


def _seconds(*, minimum: float = 0.0) -> Parser[float]:
    wanted = f"a number of seconds of at least {minimum:g}"

    def parse(value: object, setting: str) -> float:
        number: object = value
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise _refuse(setting, wanted, value) from None
        if isinstance(number, bool) or not isinstance(number, int | float) or not number >= minimum:
            raise _refuse(setting, wanted, value)  # "not >=" also refuses NaN
        return float(number)

    return parse


def _text(value: object, setting: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _refuse(setting, "a string", value)
    return value


def _choice(*choices: str, empty: str) -> Parser[str]:
    """One of ``choices`` in any case; an empty value (or None) means ``empty``."""
    wanted = ", ".join(c or "empty" for c in choices[:-1]) + f" or {choices[-1] or 'empty'}"

    def parse(value: object, setting: str) -> str:
        if value is None or value == "":
            return empty
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise _refuse(setting, wanted, value)

    return parse


def _texts(value: object, setting: str) -> list[str]:
    """A list of strings, or one comma-separated string; blank items are dropped and the others stripped."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, Sequence) or not all(isinstance(item, str) for item in value):
        raise _refuse(setting, "a list of strings (or one comma-separated string)", value)
    return [item.strip() for item in value if item.strip()]


def _aliases(value: object, setting: str) -> list[str]:
    aliases = _texts(value, setting)
    if not aliases:
        raise _refuse(setting, "a non-empty list of database aliases, such as ['default']", value)
    return aliases


def _path(value: object, setting: str) -> Path:
    """A path, relative ones taken from BASE_DIR."""
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise _refuse(setting, "a path", value)
    return resolve_path(value, setting=setting)


def _optional_path(value: object, setting: str) -> Path | None:
    """Empty (or None) for no path; relative paths resolve against BASE_DIR."""
    if value is None or value == "":
        return None
    return _path(value, setting)


def _paths(value: object, setting: str) -> list[Path]:
    if isinstance(value, os.PathLike):
        value = [value]
    if isinstance(value, str):
        value = value.split(",")
    if value is None:
        return []
    if not isinstance(value, Sequence) or not all(isinstance(item, str | os.PathLike) for item in value):
        raise _refuse(setting, "a list of paths (or one comma-separated string)", value)
    return [resolve_path(os.fspath(item).strip(), setting=setting) for item in value if os.fspath(item).strip()]


# -- the settings ------------------------------------------------------------------------------------------
class Setting(Generic[T]):
    """One ADCP_BACKUP_* setting: read from django.conf.settings at each access (so override_settings works),
    the default when the project does not set it, parsed into its type; a bad value raises
    BackupConfigurationError naming the setting."""

    def __init__(self, default: object, parse: Parser[T], doc: str) -> None:
        self.default = default
        self.parse = parse
        self.doc = doc
        self.name = ""

    def __set_name__(self, owner: type[object], name: str) -> None:
        self.name = name

    @property
    def setting(self) -> str:
        """The name in the project's settings: ADCP_BACKUP_ and the attribute's name."""
        return f"ADCP_BACKUP_{self.name}"

    def raw(self) -> object:
        """The value as the project wrote it (or the default), before parsing."""
        return getattr(settings, self.setting, self.default)

    @overload
    def __get__(self, instance: None, owner: type[object]) -> Setting[T]: ...

    @overload
    def __get__(self, instance: object, owner: type[object]) -> T: ...

    def __get__(self, instance: object, owner: type[object]) -> Setting[T] | T:
        if instance is None:
            return self
        return self.parse(self.raw(), self.setting)


class BackupSettings:
    """Lazy, typed access: ``backup_settings.KEEP_LAST`` reads ``settings.ADCP_BACKUP_KEEP_LAST`` at that moment."""

    DATABASES = Setting(["default"], _aliases,
                        "Aliases of the databases holding the AdCP tables; the first is the commands' default "
                        "--database.")
    DIR = Setting("backups", _path, "Folder of the default file-system backup storage (relative: to BASE_DIR).")
    STORAGE_ALIAS = Setting("adcp_backup", _text, "STORAGES alias of the backup storage, when the project defines it.")
    SETTINGS_FILES = Setting([], _paths,
                             "Settings files stored byte for byte in every full backup (relative: to BASE_DIR).")
    ENV_VARS = Setting(list(LEGACY_ENV_VARS), _texts, "Environment variables recorded in every full backup.")
    SECRET_PATTERNS = Setting(["KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "_PASS",
                               "_PWD", "_DSN"], _texts,
                              "Substrings that mark an environment variable's value (or a settings file's key) as a "
                              "secret.")
    COMPRESSION = Setting("gzip", _choice("none", "gzip", "zstd", empty="none"),
                          "Compression of backup_create when --compression is not given: none, gzip or zstd.")
    GZIP_LEVEL = Setting(1, _integer(minimum=0, maximum=9),
                         "gzip level: 1 is four times faster than 6 for a few percent of size.")
    ZSTD_LEVEL = Setting(3, _integer(minimum=1, maximum=22), "zstd level.")
    BATCH_SIZE = Setting(2000, _integer(minimum=1), "Rows fetched or inserted per database round trip.")
    SAFETY_BACKUP = Setting(True, _boolean, "Take a backup of what a restore replaces, before it replaces it.")
    VERIFY = Setting(True, _boolean,
                     "Read a new backup back from storage and check its checksum before publishing it.")
    PROGRESS_INTERVAL = Setting(5.0, _seconds(), "Seconds between progress lines when stderr is not a terminal.")
    MAX_PROBLEMS = Setting(100, _integer(minimum=1), "Problems a validation lists; the rest are counted, not kept.")
    MAX_LINE_LENGTH = Setting(64 * 1024**2, _integer(minimum=1024**2),
                              "Longest line, in bytes, a backup file may hold (at least 1 MiB); a longer one makes it "
                              "invalid.")
    ADMIN_RESTORE = Setting(True, _boolean,
                            "Offer restore and upload in the admin; False leaves restores to the shell.")
    UPLOAD_MAX_SIZE = Setting(2 * 1024**3, _integer(minimum=1),
                              "Largest backup file, in bytes, the admin accepts as an upload.")
    JOB_STALE_AFTER = Setting(300.0, _seconds(),
                              "Seconds without a heartbeat after which an unfinished job is marked failed and stops "
                              "blocking (a job whose process is gone is marked at once).")
    JOB_HEARTBEAT = Setting(15.0, _seconds(), "Seconds between the heartbeats a running job records.")
    ADMIN_DATABASES = Setting([], _texts, "Database aliases the admin's Backups page manages (default: "
                                          "ADCP_BACKUP_DATABASES); with several, the page offers a choice.")
    JOB_RUNNER = Setting("auto", _choice("auto", "thread", "celery", empty="auto"),
                         "Where admin jobs run: auto (Celery when a broker is set), celery or thread.")
    SCHEDULE = Setting("0 2 * * *", _text, "When Celery beat runs a backup: a crontab line, @daily-style alias, "
                                           "@every 6h, or empty for never.")
    PRUNE_SCHEDULE = Setting("30 3 * * *", _text, "When Celery beat applies the retention rules; same syntax.")
    SCHEDULED_BY = Setting("", _choice("celery", "cron", "systemd", "", empty=""),
                           "What starts scheduled backups: celery (beat with the app's entries), cron, systemd, or "
                           "empty for nothing; backup_info shows a schedule only when it is set.")
    KEEP_LAST = Setting(7, _integer(minimum=0), "backup_prune keeps the newest N backups.")
    KEEP_DAILY = Setting(14, _integer(minimum=0),
                         "backup_prune keeps the newest backup of each of the last N days that have one.")
    KEEP_WEEKLY = Setting(8, _integer(minimum=0),
                          "backup_prune keeps the newest backup of each of the last N ISO weeks that have one.")
    KEEP_MONTHLY = Setting(12, _integer(minimum=0),
                           "backup_prune keeps the newest backup of each of the last N months that have one.")
    KEEP_SAFETY = Setting(3, _integer(minimum=0),
                          "backup_prune keeps the newest N safety backups (taken before restores).")
    LOCK_DIR = Setting("", _optional_path, "Folder of the lock file that serialises backups, restores and prunes "
                                           "(default: the backup folder).")
    LOCK_TIMEOUT = Setting(60.0, _seconds(), "Seconds a backup or prune waits for a running one before failing; "
                                             "restores never wait.")
    NOTIFY_ADMINS = Setting(False, _boolean, "E-mail the site's ADMINS when a scheduled backup fails.")
    ENCRYPT = Setting(False, _boolean,
                      "Encrypt every new backup, safety backups included, with age (as --encrypt).")
    AGE_RECIPIENTS = Setting([], _texts, "age public keys (age1...) new encrypted backups are readable by.")
    AGE_IDENTITY = Setting("", _optional_path, "Path of the age identity file (age-keygen) that decrypts backups.")
    SIGNING_KEY = Setting("", _text, "Secret that signs every new backup (a MAC over header and trailer); empty: "
                                     "derived from SECRET_KEY.")
    SIGNING_KEY_FALLBACKS = Setting([], _texts, "Older signing keys still accepted when verifying "
                                                "(SECRET_KEY_FALLBACKS too, for a derived key).")
    FUTURE_TOLERANCE = Setting(300.0, _seconds(),
                               "Seconds a backup's creation time may lie ahead of now before it is flagged.")
    PARTIAL_EXPIRY = Setting(24 * 3600.0, _seconds(),
                             "Seconds after which backup_prune removes a .partial file a killed backup left behind.")
    DRILL_SCHEDULE = Setting("0 4 * * 0", _text,
                             "When Celery beat runs a restore drill of the newest backup (default weekly); same "
                             "syntax.")
    DRILL_POSTGRESQL_SCRATCH = Setting("database", _choice("database", "schema", empty="database"),
                                       "A drill's scratch on PostgreSQL: database (falls back to schema without "
                                       "CREATEDB), or schema (a temporary schema in the live database: no "
                                       "CREATE/DROP DATABASE and their checkpoints).")
    DRILL_DIR = Setting("", _optional_path,
                        "Folder of a drill's scratch SQLite database (default: the system's temporary folder).")
    TEMP_DIR = Setting("", _optional_path,
                       "Folder of the temporary file of a backup bound for remote storage (default: the system's).")

    @property
    def default_database(self) -> str:
        """The commands' default --database: the first of ADCP_BACKUP_DATABASES."""
        return self.DATABASES[0]


SETTINGS: dict[str, Setting[Any]] = {
    name: value for name, value in vars(BackupSettings).items() if isinstance(value, Setting)
}
"""Every setting by its name without the ADCP_BACKUP_ prefix."""

backup_settings = BackupSettings()
