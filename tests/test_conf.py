"""Path settings resolve against BASE_DIR, so every process sees the same backups wherever it starts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adcp_backup import checks
from adcp_backup.conf import backup_settings
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
def test_commands_from_three_working_directories_see_the_same_backups(tmp_path):
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


def test_relative_paths_resolve_against_base_dir_never_the_working_directory(settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings.BASE_DIR = tmp_path / "project"
    settings.ADCP_BACKUP_DIR = "var/backups"
    settings.ADCP_BACKUP_SETTINGS_FILES = ["conf/app.json", "/etc/adcp/tenant.json"]
    settings.ADCP_BACKUP_LOCK_DIR = "run"
    assert backup_settings.backup_dir == tmp_path / "project" / "var" / "backups"
    assert backup_settings.settings_files == [tmp_path / "project" / "conf" / "app.json", Path("/etc/adcp/tenant.json")]
    assert backup_settings.optional_path("LOCK_DIR") == tmp_path / "project" / "run"
    assert backup_settings.optional_path("TEMP_DIR") is None


def test_without_base_dir_a_relative_folder_is_refused_and_a_check_asks_for_it(settings):
    del settings.BASE_DIR
    settings.ADCP_BACKUP_DIR = "backups"
    with pytest.raises(BackupConfigurationError, match="set ADCP_BACKUP_DIR to an absolute path"):
        _ = backup_settings.backup_dir
    [error] = checks.check_backup_dir()
    assert error.id == checks.E005_NO_BASE and "ADCP_BACKUP_DIR" in error.hint and "adcp_backup" in error.hint


def test_without_base_dir_an_absolute_folder_or_a_storage_needs_nothing_more(settings, tmp_path):
    del settings.BASE_DIR
    settings.ADCP_BACKUP_DIR = str(tmp_path / "backups")
    assert checks.check_backup_dir() == []
    settings.ADCP_BACKUP_DIR = "backups"
    settings.STORAGES = {**settings.STORAGES, "adcp_backup": {
        "BACKEND": "django.core.files.storage.InMemoryStorage"}}
    assert checks.check_backup_dir() == []


def test_the_settings_files_have_no_default_outside_the_demo(settings):
    del settings.ADCP_BACKUP_SETTINGS_FILES
    assert backup_settings.settings_files == []
    assert checks.check_settings_files() == []


def test_the_default_database_is_the_first_configured(settings):
    assert backup_settings.default_database == "default"
    settings.ADCP_BACKUP_DATABASES = ["second", "default"]
    assert backup_settings.default_database == "second"
    settings.ADCP_BACKUP_DATABASES = []
    with pytest.raises(BackupConfigurationError, match="ADCP_BACKUP_DATABASES"):
        _ = backup_settings.databases
