"""Private, unpredictable paths: nothing planted at a temporary path receives a backup or redirects a write."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from adcp_backup import locking, services, uploads
from adcp_backup.exceptions import BackupConfigurationError
from adcp_backup.logs import PrivateFileHandler

from .helpers import run_command

ROOT = Path(__file__).resolve().parent.parent
VICTIM = b"a file of another user, which a backup must never touch\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def tree(folder: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry below ``folder``: its mode and content (a symlink's target)."""
    found: dict[str, tuple[int, bytes | str]] = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            found[str(path.relative_to(folder))] = (0, os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            found[str(path.relative_to(folder))] = (stat.S_IMODE(info.st_mode), path.read_bytes())
    return found


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    target = tmp_path / "elsewhere" / "victim.txt"
    target.parent.mkdir()
    target.write_bytes(VICTIM)
    target.chmod(0o644)
    return target


def test_planted_files_and_symlinks_at_the_old_partial_paths_are_never_used(seeded, backup_env, victim):
    seeded()
    out = backup_env / "out"
    out.mkdir()
    (out / ".copy.jsonl.gz.partial").symlink_to(victim)       # the name --output FILE used to write through
    (out / ".copy.jsonl.gz.partial.x").write_bytes(b"planted")
    planted = tree(out)
    result = services.backup_create(output=str(out / "copy.jsonl.gz"))
    assert victim.read_bytes() == VICTIM and mode(victim) == 0o644
    after = tree(out)
    assert {k: v for k, v in after.items() if k != "copy.jsonl.gz"} == planted  # no other file touched, none left
    assert mode(out / "copy.jsonl.gz") == 0o600
    assert services.backup_validate(file=result.path).valid


def test_temporary_files_are_0600_with_random_names_beside_the_target(seeded, backup_env):
    seeded()
    seen: list[tuple[str, int]] = []
    folder = backup_env / "backups"

    def look(event) -> None:
        for path in folder.glob(".*.partial"):
            seen.append((path.name, mode(path)))

    services.backup_create(progress=look)
    assert seen, "no temporary file was seen while the backup was written"
    names = {name for name, _mode in seen}
    assert all(m == 0o600 for _name, m in seen)
    assert all(name.startswith(".adcp-backup-") and len(name) > len(".adcp-backup-.partial") + 30 for name in names)
    second: list[tuple[str, int]] = []
    services.backup_create(progress=lambda e: second.extend((p.name, 0) for p in folder.glob(".*.partial")))
    assert names.isdisjoint({name for name, _ in second})
    assert list(folder.glob(".*.partial")) == []


def test_a_symlink_at_the_lock_path_is_refused_and_its_target_untouched(seeded, backup_env, victim, settings):
    seeded()
    lock_dir = backup_env / "locks"
    lock_dir.mkdir()
    settings.ADCP_BACKUP_LOCK_DIR = str(lock_dir)
    (lock_dir / locking.LOCK_FILE_NAME).symlink_to(victim)
    with pytest.raises(BackupConfigurationError, match="symbolic link"):
        services.backup_create()
    assert victim.read_bytes() == VICTIM
    assert services.backup_list() == []
    assert locking.current_holder() is None


def test_the_quarantine_folder_is_private_or_refused(backup_env, settings, tmp_path):
    folder = uploads.quarantine_dir()
    assert folder == backup_env / "backups" / ".incoming" and mode(folder) == 0o700
    folder.chmod(0o755)
    with pytest.raises(BackupConfigurationError, match="not a private folder"):
        uploads.quarantine_dir()
    folder.rmdir()
    folder.symlink_to(tmp_path)
    with pytest.raises(BackupConfigurationError, match="not a private folder"):
        uploads.quarantine_dir()


def test_with_remote_storage_the_quarantine_in_the_temporary_folder_is_checked_too(backup_env, settings, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o777)
    spool.chmod(0o1777)  # like /tmp: anyone may create entries
    settings.ADCP_BACKUP_TEMP_DIR = str(spool)
    settings.STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "adcp_backup": {"BACKEND": "storages.backends.s3.S3Storage",
                        "OPTIONS": {"bucket_name": "b", "access_key": "a", "secret_key": "s", "region_name": "x"}},
    }
    planted = spool / f"adcp-backup-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)  # created first by someone else, open to all
    with pytest.raises(BackupConfigurationError, match="mode 0777"):
        uploads.quarantine_dir()
    planted.rmdir()
    folder = uploads.quarantine_dir()
    assert folder == planted / ".incoming"
    assert mode(planted) == 0o700 and mode(folder) == 0o700


def test_output_to_a_missing_folder_with_a_slash_creates_it_0700_and_says_so(seeded, backup_env):
    seeded()
    target = backup_env / "offsite" / "nightly"
    code, out, err = run_command("backup_create", "--output", f"{target}/")
    assert code == 0, err
    assert f"Created the folder {backup_env / 'offsite'} (mode 0700)" in out
    [written] = list(target.iterdir())
    assert written.name.startswith("adcp-backup-") and mode(written) == 0o600
    assert mode(target) == 0o700 and mode(backup_env / "offsite") == 0o700
    code, out, err = run_command("backup_create", "--output", f"{target}/", "--json")
    assert json.loads(out)["notes"] == [] and len(list(target.iterdir())) == 2
    # Without the slash, a missing name is a file name, as before.
    code, out, err = run_command("backup_create", "--output", str(backup_env / "single.jsonl.gz"))
    assert code == 0 and (backup_env / "single.jsonl.gz").is_file()


def test_the_operations_log_is_0600_and_never_written_through_a_symlink(tmp_path, victim):
    log = tmp_path / "ops.log"
    handler = PrivateFileHandler(str(log), encoding="utf-8")
    handler.emit(_record("first"))
    handler.close()
    assert mode(log) == 0o600
    log.chmod(0o644)  # as earlier versions left it
    handler = PrivateFileHandler(str(log), encoding="utf-8")
    handler.emit(_record("second"))
    handler.close()
    assert mode(log) == 0o600 and log.read_text().splitlines() == ["first", "second"]
    linked = tmp_path / "linked.log"
    linked.symlink_to(victim)
    with pytest.raises(OSError):
        PrivateFileHandler(str(linked), encoding="utf-8")
    assert victim.read_bytes() == VICTIM


def _record(message: str):
    import logging

    return logging.LogRecord("adcp_backup", logging.INFO, __file__, 1, message, None, None)


def project(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ADCP_", "DATABASE_"))}
    clean.update({"PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "project.settings", **env})
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=cwd, env=clean,
                          capture_output=True, text=True, timeout=120)


def test_the_demo_project_generates_its_secret_key_and_refuses_the_published_one(tmp_path):
    first = project(tmp_path, "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)")
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "data" / ".secret_key"
    assert mode(key_file) == 0o600
    key = first.stdout.strip().splitlines()[-1]
    assert len(key) >= 48 and key_file.read_text().strip() == key
    again = project(tmp_path, "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)")
    assert again.stdout.strip().splitlines()[-1] == key  # kept: the backups it signed stay signed

    published = project(tmp_path, "check", DJANGO_SECRET_KEY="adcp-backup-development-key-change-me")
    assert published.returncode != 0 and "published development key" in published.stderr
    debug = project(tmp_path, "check", DJANGO_SECRET_KEY="adcp-backup-development-key-change-me",
                    DJANGO_DEBUG="true")
    assert debug.returncode == 0, debug.stderr

    key_file.chmod(0o644)
    widened = project(tmp_path, "check")
    assert widened.returncode != 0 and "mode 0600" in widened.stderr


def test_a_symlink_planted_at_the_generated_key_path_is_refused(tmp_path, victim):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / ".secret_key").symlink_to(victim)
    refused = project(tmp_path, "check")
    assert refused.returncode != 0 and "must be a regular file of this user" in refused.stderr
    assert victim.read_bytes() == VICTIM
