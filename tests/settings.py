"""Test settings: the project's, with a file SQLite database and, when their URLs are set, PostgreSQL and MariaDB."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import environ

# One key for the test process and every manage.py it starts (they inherit the environment), so that backups
# signed on one side verify on the other; set before the project's settings, which would otherwise generate one.
os.environ.setdefault("DJANGO_SECRET_KEY", "adcp-backup-tests-signing-secret-of-this-test-run")

from project.settings import *  # noqa: E402, F403
from project.settings import SQLITE_INIT_COMMAND, _database  # noqa: E402

_WORK = Path(os.environ.get("ADCP_TEST_WORKDIR") or tempfile.gettempdir()) / f"adcp-backup-tests-{os.getpid()}"
_WORK.mkdir(parents=True, exist_ok=True)

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(_WORK / "default.sqlite3"),
        "TEST": {"NAME": str(_WORK / "test_default.sqlite3")},
        "OPTIONS": {"init_command": SQLITE_INIT_COMMAND},
    },
    # A second SQLite database, for backups of several databases sharing one storage.
    "second": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(_WORK / "second.sqlite3"),
        "TEST": {"NAME": str(_WORK / "test_second.sqlite3")},
        "OPTIONS": {"init_command": SQLITE_INIT_COMMAND},
    },
}

_env = environ.Env()
POSTGRES_URL = _env.str("ADCP_TEST_POSTGRES_URL", default="")
MYSQL_URL = _env.str("ADCP_TEST_MYSQL_URL", default="")
if POSTGRES_URL:
    DATABASES["postgresql"] = _database(POSTGRES_URL)
if MYSQL_URL:
    DATABASES["mysql"] = _database(MYSQL_URL)

STATIC_ROOT = str(_WORK / "static")
Path(STATIC_ROOT).mkdir(exist_ok=True)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOG_FILE = str(_WORK / "backup_operations.log")
LOGGING["handlers"]["operations_file"]["filename"] = LOG_FILE  # noqa: F405
LOGGING["handlers"]["console"]["level"] = "WARNING"  # noqa: F405
