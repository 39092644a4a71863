"""Settings of the adcp-backup project, read from the environment with django-environ.

Relative paths in the environment resolve against the working directory, as operators expect from a
command-line tool. Every variable is listed in the README's configuration table.
"""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
CWD = Path.cwd()

env = environ.Env()
if (CWD / ".env").is_file():
    environ.Env.read_env(CWD / ".env")


def _cwd_path(value: str) -> str:
    """An absolute path for a path from the environment, relative ones taken from the working directory."""
    return str((CWD / Path(value).expanduser()).resolve())


SQLITE_INIT_COMMAND = "PRAGMA journal_mode=wal"


def _mysql_driver() -> None:
    """MariaDB/MySQL through PyMySQL (pure Python, no client headers to build against) unless mysqlclient is
    there; imported only when a database is MariaDB/MySQL, so that other commands start without it."""
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        try:
            import pymysql

            pymysql.install_as_MySQLdb()
        except ImportError:
            pass


def _database(url: str) -> dict:
    config = env.db_url_config(url)
    if config["ENGINE"] == "django.db.backends.sqlite3" and config["NAME"] not in ("", ":memory:"):
        config["NAME"] = _cwd_path(config["NAME"])
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)  # SQLite cannot create the folder
        config.setdefault("TEST", {})["NAME"] = str(Path(config["NAME"]).with_suffix(".test.sqlite3"))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL: readers never wait for a writer, so the site and the admin keep answering during a restore.
        config.setdefault("OPTIONS", {}).setdefault("init_command", SQLITE_INIT_COMMAND)
    if config["ENGINE"] == "django.db.backends.mysql":
        _mysql_driver()
        config.setdefault("OPTIONS", {}).setdefault("charset", "utf8mb4")
        config.setdefault("TEST", {}).update({"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_bin"})
    return config


DEBUG = env.bool("DJANGO_DEBUG", default=False)
# The key earlier versions used when DJANGO_SECRET_KEY was unset: public, so refused outside DEBUG.
_PUBLISHED_KEY = "adcp-backup-development-key-change-me"


def _secret_key() -> str:
    """DJANGO_SECRET_KEY, else a random key generated on first run into data/.secret_key (mode 0600).

    The key also signs the backups (adcp_backup.signing): a published one would let anyone sign a file."""
    from django.core.exceptions import ImproperlyConfigured

    value = env.str("DJANGO_SECRET_KEY", default="")
    if value:
        if value == _PUBLISHED_KEY and not DEBUG:
            raise ImproperlyConfigured("DJANGO_SECRET_KEY is the published development key; set a secret one "
                                       "(or unset it to have one generated in data/.secret_key).")
        return value
    path = CWD / "data" / ".secret_key"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        fd = -1
    if fd == -1:  # generated on an earlier run
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise ImproperlyConfigured(f"{path} must be a regular file of this user, mode 0600; it is not, so it "
                                       "was not used. Fix or remove it, or set DJANGO_SECRET_KEY.")
        key = path.read_text(encoding="utf-8").strip()
        if len(key) < 32:
            raise ImproperlyConfigured(f"{path} holds no usable key; remove it to have a new one generated.")
        return key
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    return key


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "adcp_backup",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The demo serves its own static files (the admin's CSS and JS), with DEBUG off and no web server in front.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": _database(env.str("DATABASE_URL", default="sqlite:///data/adcp_demo.sqlite3"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = _cwd_path(env.str("STATIC_ROOT", default="data/static"))
# Straight from the apps' static folders, so `runserver` needs no collectstatic first; a production site runs
# collectstatic and may turn this off.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)


def _env_path(name: str) -> str:
    """A path variable, relative ones taken from the working directory; empty stays empty (the app's "none")."""
    value = env.str(name)
    return _cwd_path(value) if value else ""


# adcp-backup: every ADCP_BACKUP_* setting, its type and its default are declared in adcp_backup/conf.py. Here an
# environment variable sets one only when it is present, so that each default has one source; the exceptions are
# the demo's own choices below (its folder, its settings files and what runs its schedule).
ADCP_BACKUP_DIR = _cwd_path(env.str("ADCP_BACKUP_DIR", default="data/backups"))
ADCP_BACKUP_SETTINGS_FILES = [
    _cwd_path(p)
    for p in env.list("ADCP_BACKUP_SETTINGS_FILES", default=["data/app_settings.json", "data/tenant_settings.json"])
]
_FROM_ENVIRONMENT = {
    "ADCP_BACKUP_ENV_VARS": env.list,
    "ADCP_BACKUP_COMPRESSION": env.str,
    "ADCP_BACKUP_GZIP_LEVEL": env.int,
    "ADCP_BACKUP_ZSTD_LEVEL": env.int,
    "ADCP_BACKUP_SAFETY_BACKUP": env.bool,
    "ADCP_BACKUP_MAX_LINE_LENGTH": env.int,
    "ADCP_BACKUP_TEMP_DIR": _env_path,
    # Encryption with age (docs/security.md): public keys to encrypt to, and the identity file that decrypts.
    "ADCP_BACKUP_ENCRYPT": env.bool,
    "ADCP_BACKUP_AGE_RECIPIENTS": env.list,
    "ADCP_BACKUP_AGE_IDENTITY": _env_path,
    # Backups are signed (docs/security.md); empty: a key derived from SECRET_KEY, SECRET_KEY_FALLBACKS honoured.
    "ADCP_BACKUP_SIGNING_KEY": env.str,
    "ADCP_BACKUP_SIGNING_KEY_FALLBACKS": env.list,
    # Scheduling, retention, locking and notifications (docs/operations.md).
    "ADCP_BACKUP_SCHEDULE": env.str,
    "ADCP_BACKUP_PRUNE_SCHEDULE": env.str,
    "ADCP_BACKUP_DRILL_SCHEDULE": env.str,
    "ADCP_BACKUP_DRILL_POSTGRESQL_SCRATCH": env.str,
    "ADCP_BACKUP_DRILL_DIR": _env_path,
    "ADCP_BACKUP_KEEP_LAST": env.int,
    "ADCP_BACKUP_KEEP_DAILY": env.int,
    "ADCP_BACKUP_KEEP_WEEKLY": env.int,
    "ADCP_BACKUP_KEEP_MONTHLY": env.int,
    "ADCP_BACKUP_KEEP_SAFETY": env.int,
    "ADCP_BACKUP_LOCK_DIR": _env_path,
    "ADCP_BACKUP_LOCK_TIMEOUT": env.float,
    "ADCP_BACKUP_NOTIFY_ADMINS": env.bool,
}
vars().update({name: read(name) for name, read in _FROM_ENVIRONMENT.items() if name in env})
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])

# Backups in S3-compatible object storage through django-storages (docs/storage.md). Credentials are not
# settings: boto3 reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or a profile, or an instance role) itself.
if env.str("ADCP_BACKUP_S3_BUCKET", default=""):
    try:
        import storages  # noqa: F401
        from boto3.s3.transfer import TransferConfig
    except ImportError as exc:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "ADCP_BACKUP_S3_BUCKET needs django-storages and boto3: pip install 'adcp-backup[s3]'"
        ) from exc

    _S3_PART = env.int("ADCP_BACKUP_S3_MULTIPART_MB", default=16) << 20
    _S3_CONCURRENCY = env.int("ADCP_BACKUP_S3_CONCURRENCY", default=4)
    _S3_TRANSFER = TransferConfig(multipart_threshold=_S3_PART, multipart_chunksize=_S3_PART,
                                  max_concurrency=_S3_CONCURRENCY)
    # boto3 reads the parts of an upload into memory, ten by default: bound them to those being sent.
    _S3_TRANSFER.max_in_memory_upload_chunks = _S3_CONCURRENCY

    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "adcp_backup": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": env.str("ADCP_BACKUP_S3_BUCKET"),
                "location": env.str("ADCP_BACKUP_S3_PREFIX", default="").strip("/"),
                "endpoint_url": env.str("ADCP_BACKUP_S3_ENDPOINT_URL", default="") or None,
                "region_name": env.str("ADCP_BACKUP_S3_REGION", default="") or None,
                "addressing_style": env.str("ADCP_BACKUP_S3_ADDRESSING_STYLE", default="") or None,
                "signature_version": "s3v4",
                "file_overwrite": False,
                "default_acl": None,
                # Stored as opaque bytes: no Content-Encoding that would make HTTP clients unpack a .gz backup.
                "object_parameters": {"ContentType": "application/octet-stream"},
                "transfer_config": _S3_TRANSFER,
            },
        },
    }

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TIMEZONE = TIME_ZONE
# The demo's Celery app (project/celery.py) gives beat the app's entries, so with a broker Celery runs the
# schedule; without one, say "cron" or "systemd" here when they start the backups.
ADCP_BACKUP_SCHEDULED_BY = env.str("ADCP_BACKUP_SCHEDULED_BY", default="celery" if CELERY_BROKER_URL else "")

ADMINS = [(address, address) for address in env.list("DJANGO_ADMINS", default=[])]
SERVER_EMAIL = env.str("DJANGO_SERVER_EMAIL", default="root@localhost")
if "EMAIL_URL" in env:
    vars().update(env.email_url("EMAIL_URL"))

LOG_FILE = _cwd_path(env.str("ADCP_BACKUP_LOG_FILE", default="backup_operations.log"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "filters": {
        "redact": {"()": "adcp_backup.logs.RedactingFilter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
        "operations_file": {
            "class": "adcp_backup.logs.PrivateFileHandler",  # mode 0600, never through a symbolic link
            "filename": LOG_FILE,
            "formatter": "plain",
            "filters": ["redact"],
            "delay": True,
            "encoding": "utf-8",
        },
    },
    "loggers": {
        "adcp_backup": {
            "handlers": ["console", "operations_file"],
            "level": env.str("ADCP_BACKUP_LOG_LEVEL", default="INFO"),
            "propagate": False,
        },
    },
}
