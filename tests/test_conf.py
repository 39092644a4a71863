"""The settings: each ADCP_BACKUP_* setting has one default, one type and one parser, and is read at call time.

Path settings resolve against BASE_DIR, so every process sees the same backups wherever it starts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from adcp_backup.conf import SETTINGS, BackupSettings, Setting, backup_settings
from adcp_backup.exceptions import BackupConfigurationError

REPO = Path(__file__).resolve().parent.parent

ADOPTER_SETTINGS = '''
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "adopter-test-key"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "adcp_backup"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
USE_TZ = True
'''


def django_admin(*args: str, site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADCP_", "DJANGO_", "DATABASE_"))}
    env.update(PYTHONPATH=f"{site}{os.pathsep}{REPO}", DJANGO_SETTINGS_MODULE="adopter_settings")
    return subprocess.run([sys.executable, "-m", "django", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=180)


@pytest.mark.slow
def test_commands_from_three_working_directories_see_the_same_backups(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "adopter_settings.py").write_text(ADOPTER_SETTINGS)
    places = [tmp_path / "cron", tmp_path / "systemd" / "work", Path("/")]
    for place in places[:2]:
        place.mkdir(parents=True)

    seeded = django_admin("adcp_demo", "--tenants", "2", "--products", "5", site=site, cwd=places[0])
    assert seeded.returncode == 0, seeded.stderr
    names = []
    for place in places:
        made = django_admin("backup_create", "--json", site=site, cwd=place)
        assert made.returncode == 0, made.stderr
        names.append(json.loads(made.stdout)["name"])
        assert json.loads(made.stdout)["path"] == str(site / "backups" / names[-1])
    for place in places:
        listed = django_admin("backup_list", "--json", site=site, cwd=place)
        assert listed.returncode == 0, listed.stderr
        assert sorted(b["name"] for b in json.loads(listed.stdout)["backups"]) == sorted(names)
    assert sorted(p.name for p in (site / "backups").glob("adcp-backup-*")) == sorted(names)
    for place in places[:2]:
        assert not (place / "backups").exists() and not (place / "data").exists()


def unset(settings: Any, *names: str) -> None:
    """The project's value of each setting removed, so that the app's default applies."""
    for name in names:
        if hasattr(settings, f"ADCP_BACKUP_{name}"):
            delattr(settings, f"ADCP_BACKUP_{name}")


def defaults(base: Path) -> dict[str, object]:
    """What each setting is when the project does not set it, as its type."""
    return {
        "DATABASES": ["default"], "DIR": base / "backups", "STORAGE_ALIAS": "adcp_backup", "SETTINGS_FILES": [],
        "ENV_VARS": ["GEMINI_API_KEY", "EMBEDDINGS_PROVIDER", "EMBEDDINGS_MODEL", "EMB_CONCURRENCY",
                     "EMB_BATCH_SIZE", "RAG_TOP_K", "ORCH_TIMEOUT_MS_DEFAULT", "ORCH_CONCURRENCY", "CB_FAILS",
                     "CB_TTL_S", "MCP_SESSION_TTL_S", "ENABLE_WEB_CONTEXT", "WEB_CONTEXT_TIMEOUT_MS",
                     "WEB_CONTEXT_MAX_SNIPPETS", "GEMINI_MODEL", "DEBUG", "SERVICE_BASE_URL",
                     "SKIP_REFERENCE_VALIDATION"],
        "SECRET_PATTERNS": ["KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "_PASS",
                            "_PWD", "_DSN"],
        "COMPRESSION": "gzip", "GZIP_LEVEL": 1, "ZSTD_LEVEL": 3, "BATCH_SIZE": 2000, "SAFETY_BACKUP": True,
        "VERIFY": True, "PROGRESS_INTERVAL": 5.0, "MAX_PROBLEMS": 100, "MAX_LINE_LENGTH": 64 << 20,
        "ADMIN_RESTORE": True, "UPLOAD_MAX_SIZE": 2 << 30, "JOB_STALE_AFTER": 300.0, "JOB_HEARTBEAT": 15.0,
        "ADMIN_DATABASES": [], "JOB_RUNNER": "auto", "SCHEDULE": "0 2 * * *", "PRUNE_SCHEDULE": "30 3 * * *",
        "SCHEDULED_BY": "", "KEEP_LAST": 7, "KEEP_DAILY": 14, "KEEP_WEEKLY": 8, "KEEP_MONTHLY": 12,
        "KEEP_SAFETY": 3, "LOCK_DIR": None, "LOCK_TIMEOUT": 60.0, "NOTIFY_ADMINS": False, "ENCRYPT": False,
        "AGE_RECIPIENTS": [], "AGE_IDENTITY": None, "SIGNING_KEY": "", "SIGNING_KEY_FALLBACKS": [],
        "FUTURE_TOLERANCE": 300.0, "PARTIAL_EXPIRY": 86400.0, "DRILL_SCHEDULE": "0 4 * * 0",
        "DRILL_POSTGRESQL_SCRATCH": "database", "DRILL_DIR": None, "TEMP_DIR": None,
    }


def test_each_setting_has_one_default_of_its_type(settings: Any) -> None:
    expected = defaults(Path(settings.BASE_DIR).resolve())
    assert sorted(expected) == sorted(SETTINGS)
    unset(settings, *SETTINGS)
    for name, value in expected.items():
        got = getattr(backup_settings, name)
        assert (got, type(got)) == (value, type(value)), name


def test_each_setting_says_in_one_line_what_it_does() -> None:
    for name, setting in SETTINGS.items():
        assert isinstance(BackupSettings.__dict__[name], Setting) and setting.setting == f"ADCP_BACKUP_{name}"
        assert setting.doc.endswith(".") and "\n" not in setting.doc, name


def test_a_default_is_a_fresh_value_each_time(settings: Any) -> None:
    unset(settings, "ENV_VARS")
    backup_settings.ENV_VARS.append("CHANGED")
    assert "CHANGED" not in backup_settings.ENV_VARS


@pytest.mark.parametrize(("name", "value", "parsed"), [
    # what an environment variable gives, or a settings module that reads one without a parser
    ("KEEP_LAST", "4", 4),
    ("KEEP_DAILY", 0, 0),
    ("GZIP_LEVEL", "9", 9),
    ("MAX_LINE_LENGTH", 1 << 20, 1 << 20),
    ("LOCK_TIMEOUT", "2.5", 2.5),
    ("LOCK_TIMEOUT", 0, 0.0),
    ("JOB_HEARTBEAT", 1, 1.0),
    ("ENCRYPT", "yes", True),
    ("ENCRYPT", "0", False),
    ("VERIFY", "False", False),
    ("NOTIFY_ADMINS", 1, True),
    ("COMPRESSION", "ZSTD", "zstd"),
    ("COMPRESSION", "", "none"),
    ("COMPRESSION", None, "none"),
    ("JOB_RUNNER", " Thread ", "thread"),
    ("JOB_RUNNER", "", "auto"),
    ("SCHEDULED_BY", "Cron", "cron"),
    ("SCHEDULED_BY", None, ""),
    ("DRILL_POSTGRESQL_SCRATCH", "SCHEMA", "schema"),
    ("SIGNING_KEY", None, ""),
    ("DATABASES", "adcp", ["adcp"]),
    ("DATABASES", ("adcp", "second"), ["adcp", "second"]),
    ("AGE_RECIPIENTS", "age1aaa, age1bbb,", ["age1aaa", "age1bbb"]),
    ("SIGNING_KEY_FALLBACKS", ["old-one", " ", "older"], ["old-one", "older"]),
    ("ADMIN_DATABASES", "second", ["second"]),
    ("LOCK_DIR", "", None),
    ("LOCK_DIR", "/run/adcp/", Path("/run/adcp")),
    ("AGE_IDENTITY", Path("/etc/adcp/../adcp/identity.txt"), Path("/etc/adcp/identity.txt")),
    ("SETTINGS_FILES", "/etc/a.json, /etc/b.json", [Path("/etc/a.json"), Path("/etc/b.json")]),
    ("SETTINGS_FILES", Path("/etc/a.json"), [Path("/etc/a.json")]),
])
def test_a_value_is_parsed_into_the_setting_s_type(settings: Any, name: str, value: object, parsed: object) -> None:
    setattr(settings, f"ADCP_BACKUP_{name}", value)
    assert getattr(backup_settings, name) == parsed


def test_relative_paths_resolve_against_base_dir_never_the_working_directory(settings: Any, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings.BASE_DIR = tmp_path / "project"
    settings.ADCP_BACKUP_DIR = "var/backups"
    settings.ADCP_BACKUP_SETTINGS_FILES = ["conf/app.json", "/etc/adcp/tenant.json"]
    settings.ADCP_BACKUP_LOCK_DIR = "run"
    settings.ADCP_BACKUP_DRILL_DIR = "~/drills"
    assert backup_settings.DIR == tmp_path / "project" / "var" / "backups"
    assert backup_settings.SETTINGS_FILES == [tmp_path / "project" / "conf" / "app.json", Path("/etc/adcp/tenant.json")]
    assert backup_settings.LOCK_DIR == tmp_path / "project" / "run"
    assert backup_settings.DRILL_DIR == Path("~/drills").expanduser()
    assert backup_settings.TEMP_DIR is None


def test_without_base_dir_a_relative_path_is_refused(settings: Any) -> None:
    del settings.BASE_DIR
    settings.ADCP_BACKUP_DIR = "backups"
    with pytest.raises(BackupConfigurationError, match="set ADCP_BACKUP_DIR to an absolute path"):
        _ = backup_settings.DIR
    settings.ADCP_BACKUP_TEMP_DIR = "spool"
    with pytest.raises(BackupConfigurationError, match="ADCP_BACKUP_TEMP_DIR is the relative path 'spool'"):
        _ = backup_settings.TEMP_DIR


@pytest.mark.parametrize(("name", "value", "wanted"), [
    ("KEEP_LAST", -1, "a whole number of at least 0"),
    ("KEEP_LAST", "seven", "a whole number of at least 0"),
    ("KEEP_LAST", True, "a whole number of at least 0"),
    ("KEEP_LAST", 7.5, "a whole number of at least 0"),
    ("GZIP_LEVEL", 10, "a whole number from 0 to 9"),
    ("ZSTD_LEVEL", 0, "a whole number from 1 to 22"),
    ("BATCH_SIZE", 0, "a whole number of at least 1"),
    ("MAX_LINE_LENGTH", 1000, "a whole number of at least 1048576"),
    ("LOCK_TIMEOUT", "soon", "a number of seconds of at least 0"),
    ("LOCK_TIMEOUT", -1, "a number of seconds of at least 0"),
    ("JOB_STALE_AFTER", float("nan"), "a number of seconds of at least 0"),
    ("ENCRYPT", "maybe", "True or False"),
    ("SAFETY_BACKUP", 2, "True or False"),
    ("COMPRESSION", "lzma", "none, gzip or zstd"),
    ("JOB_RUNNER", "cron", "auto, thread or celery"),
    ("SCHEDULED_BY", "anacron", "celery, cron, systemd or empty"),
    ("DRILL_POSTGRESQL_SCRATCH", "tablespace", "database or schema"),
    ("SIGNING_KEY", b"bytes", "a string"),
    ("SCHEDULE", 2, "a string"),
    ("ENV_VARS", ["GEMINI_API_KEY", 7], "a list of strings (or one comma-separated string)"),
    ("AGE_RECIPIENTS", {"age1": 1}, "a list of strings (or one comma-separated string)"),
    ("DATABASES", [], "a non-empty list of database aliases, such as ['default']"),
    ("DATABASES", " , ", "a non-empty list of database aliases, such as ['default']"),
    ("DIR", 5, "a path"),
    ("DIR", "", "a path"),
    ("LOCK_DIR", ["run"], "a path"),
    ("SETTINGS_FILES", [3], "a list of paths (or one comma-separated string)"),
])
def test_a_bad_value_is_one_sentence_that_names_the_setting(settings: Any, name: str, value: object,
                                                            wanted: str) -> None:
    setattr(settings, f"ADCP_BACKUP_{name}", value)
    with pytest.raises(BackupConfigurationError) as raised:
        getattr(backup_settings, name)
    assert str(raised.value) == f"ADCP_BACKUP_{name} must be {wanted}, not {value!r}."
    assert isinstance(raised.value, ImproperlyConfigured)


def test_settings_are_read_at_each_access_so_overrides_apply(settings: Any) -> None:
    unset(settings, "KEEP_LAST", "COMPRESSION")
    assert backup_settings.KEEP_LAST == 7
    with override_settings(ADCP_BACKUP_KEEP_LAST=2, ADCP_BACKUP_COMPRESSION="zstd"):
        assert (backup_settings.KEEP_LAST, backup_settings.COMPRESSION) == (2, "zstd")
    assert (backup_settings.KEEP_LAST, backup_settings.COMPRESSION) == (7, "gzip")
    settings.ADCP_BACKUP_KEEP_LAST = 30
    assert backup_settings.KEEP_LAST == 30


def test_the_default_database_is_the_first_configured(settings: Any) -> None:
    assert backup_settings.default_database == "default"
    settings.ADCP_BACKUP_DATABASES = ["second", "default"]
    assert backup_settings.default_database == "second"


def test_the_documentation_lists_every_setting() -> None:
    table = (REPO / "docs" / "install.md").read_text(encoding="utf-8")
    assert [name for name in SETTINGS if f"| `ADCP_BACKUP_{name}`" not in table] == []


def test_the_project_sets_a_setting_only_when_its_environment_variable_is_present(tmp_path: Path) -> None:
    program = ("import json, project.settings as s; "
               "print(json.dumps({k: getattr(s, k) for k in dir(s) if k.startswith('ADCP_BACKUP_')}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADCP_", "CELERY_"))}
    env.update(PYTHONPATH=str(REPO), DJANGO_SECRET_KEY="x" * 50)

    def project_settings(**variables: str) -> dict[str, object]:
        done = subprocess.run([sys.executable, "-c", program], env={**env, **variables}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, check=True)
        parsed: dict[str, object] = json.loads(done.stdout)
        return parsed

    # Only the demo's own choices: its folder and its settings files (and what runs its schedule).
    assert sorted(project_settings()) == ["ADCP_BACKUP_DIR", "ADCP_BACKUP_SCHEDULED_BY", "ADCP_BACKUP_SETTINGS_FILES"]
    given = project_settings(ADCP_BACKUP_KEEP_LAST="4", ADCP_BACKUP_ENCRYPT="true", ADCP_BACKUP_LOCK_TIMEOUT="1.5",
                             ADCP_BACKUP_AGE_RECIPIENTS="age1a,age1b", ADCP_BACKUP_LOCK_DIR="run")
    assert {k: v for k, v in given.items() if k not in ("ADCP_BACKUP_DIR", "ADCP_BACKUP_SETTINGS_FILES",
                                                         "ADCP_BACKUP_SCHEDULED_BY")} == {
        "ADCP_BACKUP_KEEP_LAST": 4, "ADCP_BACKUP_ENCRYPT": True, "ADCP_BACKUP_LOCK_TIMEOUT": 1.5,
        "ADCP_BACKUP_AGE_RECIPIENTS": ["age1a", "age1b"], "ADCP_BACKUP_LOCK_DIR": str(tmp_path / "run")}
