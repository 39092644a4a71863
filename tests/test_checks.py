"""System checks that help: they look only at what the project configured, name the setting, can be silenced."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from adcp_backup import checks


# -- checks that help: only for what the project configured, each naming its setting, each silenceable ----
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_w001_looks_only_at_the_databases_configured_as_holding_the_adcp_tables(adcp_schema, settings):
    adcp_schema("second")  # the AdCP tables live in a second alias; "default" holds only Django's own
    settings.ADCP_BACKUP_DATABASES = ["second"]
    assert checks.check_tables(databases=["default", "second"]) == []
    settings.ADCP_BACKUP_DATABASES = ["default", "second"]
    [warning] = checks.check_tables(databases=["default", "second"])
    assert warning.id == checks.W001_MISSING_TABLES and "'default'" in warning.msg
    assert "ADCP_BACKUP_DATABASES" in warning.hint and "SILENCED_SYSTEM_CHECKS" in warning.hint
    settings.ADCP_BACKUP_DATABASES = ["nowhere"]
    assert [e.id for e in checks.check_tables(databases=["default"])] == [checks.E006_DATABASES]


def test_w002_only_for_configured_settings_files_and_it_names_the_setting(settings, tmp_path):
    settings.ADCP_BACKUP_SETTINGS_FILES = []
    assert checks.check_settings_files() == []
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(tmp_path / "missing.json")]
    [warning] = checks.check_settings_files()
    assert warning.id == checks.W002_SETTINGS_FILES and "ADCP_BACKUP_SETTINGS_FILES" in warning.hint


@pytest.mark.django_db(databases="__all__")  # Django 6's check command also runs the database checks
def test_the_warnings_can_be_silenced(settings, tmp_path):
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(tmp_path / "missing.json")]
    out, err = StringIO(), StringIO()
    call_command("check", stdout=out, stderr=err)
    assert checks.W002_SETTINGS_FILES in out.getvalue() + err.getvalue()
    settings.SILENCED_SYSTEM_CHECKS = [checks.W002_SETTINGS_FILES]
    out, err = StringIO(), StringIO()
    call_command("check", stdout=out, stderr=err)
    assert checks.W002_SETTINGS_FILES not in out.getvalue() + err.getvalue()
    assert "(1 silenced)" in out.getvalue() + err.getvalue()
