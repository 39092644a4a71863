"""System checks that help: they look only at what the project configured, name the setting, can be silenced.

Every check function of adcp_backup.checks is called directly here, and only here."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from adcp_backup import checks


def age_key_pair(folder: Path) -> tuple[Path, str]:
    """An age identity file (mode 0600) and its public key, without the age program."""
    from pyrage import x25519

    identity = x25519.Identity.generate()
    path = folder / "identity.txt"
    path.write_text(f"{identity}\n", encoding="utf-8")
    os.chmod(path, 0o600)
    return path, str(identity.to_public())


# -- E007: every setting without a check of its own is of its type ----------------------------------------
def test_e007_names_each_setting_whose_value_is_not_of_its_type(settings: Any) -> None:
    assert checks.check_settings() == []
    settings.ADCP_BACKUP_KEEP_LAST = "seven"
    settings.ADCP_BACKUP_JOB_RUNNER = "cron"
    errors = checks.check_settings()
    assert [e.id for e in errors] == [checks.E007_SETTING] * 2
    assert [e.msg for e in errors] == [
        "ADCP_BACKUP_JOB_RUNNER must be auto, thread or celery, not 'cron'.",
        "ADCP_BACKUP_KEEP_LAST must be a whole number of at least 0, not 'seven'.",
    ]


def test_e007_leaves_settings_with_a_check_of_their_own_to_that_check(settings: Any) -> None:
    settings.ADCP_BACKUP_COMPRESSION = "lzma"
    settings.ADCP_BACKUP_SCHEDULED_BY = "anacron"
    settings.ADCP_BACKUP_DATABASES = []
    settings.ADCP_BACKUP_ENCRYPT = "maybe"
    assert checks.check_settings() == []
    assert [e.id for e in checks.check_compression()] == [checks.E002_COMPRESSION]
    assert [e.id for e in checks.check_schedules()] == [checks.E003_SCHEDULE]
    assert [e.id for e in checks.check_tables(databases=["default"])] == [checks.E006_DATABASES]
    assert [e.id for e in checks.check_encryption()] == [checks.E004_ENCRYPTION]


def test_a_check_whose_setting_is_malformed_leaves_the_report_to_the_setting_s_check(settings: Any) -> None:
    settings.ADCP_BACKUP_SIGNING_KEY = 12345
    assert checks.check_signing_key() == []
    assert [e.msg for e in checks.check_settings()] == ["ADCP_BACKUP_SIGNING_KEY must be a string, not 12345."]
    settings.ADCP_BACKUP_ENCRYPT = "maybe"
    assert checks.check_secret_settings_files() == []


# -- E001, E005: the backup folder -----------------------------------------------------------------------
def test_e001_for_a_backup_folder_that_is_a_file_or_cannot_be_written(settings: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    settings.ADCP_BACKUP_DIR = str(blocker)
    [error] = checks.check_backup_dir()
    assert error.id == checks.E001_BACKUP_DIR and "is a file" in error.msg
    settings.ADCP_BACKUP_DIR = str(tmp_path / "not-yet" / "backups")  # made on the first backup
    assert checks.check_backup_dir() == []
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        settings.ADCP_BACKUP_DIR = str(locked / "backups")
        [error] = checks.check_backup_dir()
        assert error.id == checks.E001_BACKUP_DIR and "cannot be written" in error.msg


def test_e005_without_base_dir_asks_for_an_absolute_folder(settings: Any) -> None:
    del settings.BASE_DIR
    settings.ADCP_BACKUP_DIR = "backups"
    [error] = checks.check_backup_dir()
    assert error.id == checks.E005_NO_BASE and "ADCP_BACKUP_DIR" in str(error.hint) and "adcp_backup" in str(error.hint)


def test_without_base_dir_an_absolute_folder_or_a_storage_needs_nothing_more(settings: Any, tmp_path: Path) -> None:
    del settings.BASE_DIR
    settings.ADCP_BACKUP_DIR = str(tmp_path / "backups")
    assert checks.check_backup_dir() == []
    settings.ADCP_BACKUP_DIR = "backups"
    settings.STORAGES = {**settings.STORAGES, "adcp_backup": {
        "BACKEND": "django.core.files.storage.InMemoryStorage"}}
    assert checks.check_backup_dir() == []


# -- E002, E003 --------------------------------------------------------------------------------------------
def test_e002_for_an_unknown_compression(settings: Any) -> None:
    assert checks.check_compression() == []
    settings.ADCP_BACKUP_COMPRESSION = "lzma"
    [error] = checks.check_compression()
    assert error.id == checks.E002_COMPRESSION
    assert error.msg == "ADCP_BACKUP_COMPRESSION must be none, gzip or zstd, not 'lzma'."


def test_e003_for_a_malformed_schedule_or_an_unknown_scheduler(settings: Any) -> None:
    assert checks.check_schedules() == []
    settings.ADCP_BACKUP_PRUNE_SCHEDULE = "61 * * *"
    errors = checks.check_schedules()
    assert [e.id for e in errors] == [checks.E003_SCHEDULE]
    assert "ADCP_BACKUP_PRUNE_SCHEDULE '61 * * *' is not a schedule" in errors[0].msg
    settings.ADCP_BACKUP_PRUNE_SCHEDULE = "61 * * * *"
    assert "61 is outside the minute range 0-59" in checks.check_schedules()[0].msg
    settings.ADCP_BACKUP_PRUNE_SCHEDULE = "*/15 8-18 * jan-jun mon-fri"
    assert checks.check_schedules() == []
    settings.ADCP_BACKUP_SCHEDULED_BY = "anacron"
    [error] = checks.check_schedules()
    assert error.id == checks.E003_SCHEDULE
    assert error.msg == "ADCP_BACKUP_SCHEDULED_BY must be celery, cron, systemd or empty, not 'anacron'."


# -- E004, W003: encryption ---------------------------------------------------------------------------------
def test_e004_and_w003_for_the_encryption_settings(settings: Any, tmp_path: Path) -> None:
    identity, public = age_key_pair(tmp_path)
    settings.ADCP_BACKUP_AGE_RECIPIENTS = [public]
    settings.ADCP_BACKUP_AGE_IDENTITY = ""
    assert checks.check_encryption() == []
    settings.ADCP_BACKUP_ENCRYPT = True
    settings.ADCP_BACKUP_AGE_RECIPIENTS = []
    assert [m.id for m in checks.check_encryption()] == [checks.E004_ENCRYPTION]
    settings.ADCP_BACKUP_AGE_RECIPIENTS = ["age1broken"]
    assert [m.id for m in checks.check_encryption()] == [checks.E004_ENCRYPTION]
    settings.ADCP_BACKUP_AGE_RECIPIENTS = [public]
    settings.ADCP_BACKUP_AGE_IDENTITY = str(identity)
    assert checks.check_encryption() == []
    os.chmod(identity, 0o644)
    [warning] = checks.check_encryption()
    assert warning.id == checks.W003_AGE_IDENTITY and "readable by other users" in warning.msg
    assert str(identity) not in warning.msg
    settings.ADCP_BACKUP_AGE_IDENTITY = str(identity) + ".missing"
    assert [m.id for m in checks.check_encryption()] == [checks.W003_AGE_IDENTITY]


# -- E006, W001: the databases -------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_w001_looks_only_at_the_databases_configured_as_holding_the_adcp_tables(adcp_schema: Callable[[str], None],
                                                                                settings: Any) -> None:
    settings.ADCP_BACKUP_DATABASES = ["default", "second"]
    assert {w.id for w in checks.check_tables(databases=["default", "second"])} == {checks.W001_MISSING_TABLES}
    adcp_schema("second")  # the AdCP tables live in a second alias; "default" holds only Django's own
    settings.ADCP_BACKUP_DATABASES = ["second"]
    assert checks.check_tables(databases=["default", "second"]) == []
    settings.ADCP_BACKUP_DATABASES = ["default", "second"]
    [warning] = checks.check_tables(databases=["default", "second"])
    assert warning.id == checks.W001_MISSING_TABLES and "'default'" in warning.msg
    assert "ADCP_BACKUP_DATABASES" in str(warning.hint) and "SILENCED_SYSTEM_CHECKS" in str(warning.hint)
    adcp_schema("default")
    assert checks.check_tables(databases=["default", "second"]) == []


def test_e006_for_a_database_alias_that_django_does_not_define(settings: Any) -> None:
    settings.ADCP_BACKUP_DATABASES = ["nowhere"]
    [error] = checks.check_tables(databases=["default"])
    assert error.id == checks.E006_DATABASES and "'nowhere'" in error.msg
    settings.ADCP_BACKUP_DATABASES = []
    assert [e.id for e in checks.check_tables(databases=["default"])] == [checks.E006_DATABASES]


# -- W002, W004: settings files ----------------------------------------------------------------------------
def test_w002_only_for_configured_settings_files_and_it_names_the_setting(settings: Any, tmp_path: Path) -> None:
    del settings.ADCP_BACKUP_SETTINGS_FILES  # the app's default: none
    assert checks.check_settings_files() == []
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(tmp_path / "missing.json")]
    [warning] = checks.check_settings_files()
    assert warning.id == checks.W002_SETTINGS_FILES and "ADCP_BACKUP_SETTINGS_FILES" in str(warning.hint)


def test_w004_for_settings_files_that_a_clear_backup_would_withhold(backup_env: Path, settings: Any) -> None:
    assert checks.check_secret_settings_files() == []
    (backup_env / "data" / "app_settings.json").write_text(json.dumps({"gemini_api_key": "SeCrEt10"}))
    [warning] = checks.check_secret_settings_files()
    assert warning.id == checks.W004_SECRET_SETTINGS and "gemini_api_key" in warning.msg
    assert "SeCrEt10" not in warning.msg
    settings.ADCP_BACKUP_ENCRYPT = True
    assert checks.check_secret_settings_files() == []


# -- W005: the signing key -----------------------------------------------------------------------------------
def test_w005_for_a_short_signing_key(settings: Any) -> None:
    assert checks.check_signing_key() == []
    settings.ADCP_BACKUP_SIGNING_KEY = "short"
    [warning] = checks.check_signing_key()
    assert warning.id == checks.W005_SIGNING_KEY and "ADCP_BACKUP_SIGNING_KEY" in warning.msg


# -- registration --------------------------------------------------------------------------------------------
@pytest.mark.django_db(databases="__all__")  # Django 6's check command also runs the database checks
def test_the_warnings_can_be_silenced(settings: Any, tmp_path: Path) -> None:
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(tmp_path / "missing.json")]
    out, err = StringIO(), StringIO()
    call_command("check", stdout=out, stderr=err)
    assert checks.W002_SETTINGS_FILES in out.getvalue() + err.getvalue()
    settings.SILENCED_SYSTEM_CHECKS = [checks.W002_SETTINGS_FILES]
    out, err = StringIO(), StringIO()
    call_command("check", stdout=out, stderr=err)
    assert checks.W002_SETTINGS_FILES not in out.getvalue() + err.getvalue()
    assert "(1 silenced)" in out.getvalue() + err.getvalue()


@pytest.mark.django_db(databases="__all__")
def test_manage_py_check_reports_a_setting_of_the_wrong_type(settings: Any) -> None:
    from django.core.management.base import SystemCheckError

    settings.ADCP_BACKUP_KEEP_DAILY = -1
    with pytest.raises(SystemCheckError, match="adcp_backup.E007.*ADCP_BACKUP_KEEP_DAILY must be a whole number"):
        call_command("check", stdout=StringIO(), stderr=StringIO())


def test_every_check_is_registered_with_django() -> None:
    from django.core.checks import registry

    registered = {getattr(check, "__name__", "") for check in registry.registry.get_checks(True)}
    ours = {name for name in vars(checks) if name.startswith("check_")}
    assert len(ours) == 9 and ours <= registered
