"""Backups in S3-compatible storage: a real moto server on 127.0.0.1, reached through django-storages' S3Storage."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.db import connections

from adcp_backup import demo, services
from adcp_backup.exceptions import BackupError
from adcp_backup.storage import BackupStorage

from .helpers import table_state
from .s3_fixtures import ACCESS_KEY, REGION, SECRET_KEY, configure, s3_options
from .test_crypto import age_keygen

PROJECT = Path(__file__).resolve().parent.parent




def modify_database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE product SET name = 'changed', price_cpm = 1 WHERE id <= 10")
        cursor.execute("DELETE FROM product_embeddings WHERE id > 6")


def command(name: str, *args: str) -> tuple[int, str]:
    """The exit code and stdout of a command (the error message when it fails); progress on stderr is dropped."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


def test_create_list_validate_restore_delete_through_s3(seeded, s3, settings, backup_env):
    seeded()
    before = table_state()
    result = services.backup_create(compression="gzip")
    key = f"{s3.prefix}/{result.name}"
    assert s3.keys() == [key]
    assert result.path is None
    assert s3.head(key)["ContentLength"] == result.size
    assert "ContentEncoding" not in s3.head(key)  # opaque bytes: no HTTP client unpacks the .gz on download
    local = Path(settings.ADCP_BACKUP_DIR)  # holds at most the lock file: no backup went there
    assert not local.exists() or not [f for f in os.listdir(local) if f.startswith("adcp-backup-")]
    assert os.listdir(settings.ADCP_BACKUP_TEMP_DIR) == []

    [entry] = services.backup_list()
    assert (entry.name, entry.size, entry.counts, entry.created_at) == (result.name, result.size, result.counts,
                                                                         result.created_at)
    assert BackupStorage().modified(result.name) is not None
    report = services.backup_validate(file=result.name)
    assert report.valid and report.counts == result.counts

    modify_database()
    restored = services.backup_restore(file="latest")
    assert table_state() == before
    assert f"{s3.prefix}/{restored.safety_backup}" in s3.keys()  # the safety backup went to S3 as well

    BackupStorage().delete(result.name)
    assert s3.keys() == [f"{s3.prefix}/{restored.safety_backup}"]
    assert [e.name for e in services.backup_list()] == [restored.safety_backup]


def test_commands_work_against_s3(seeded, s3):
    seeded()
    before = table_state()
    code, out = command("backup_create", "--compression", "zstd", "--json")
    assert code == 0
    created = json.loads(out)
    code, out = command("backup_list", "--json")
    assert code == 0 and [b["name"] for b in json.loads(out)["backups"]] == [created["name"]]
    code, out = command("backup_validate", created["name"])
    assert code == 0 and "valid" in out
    modify_database()
    code, out = command("backup_restore", "latest", "--force", "--no-safety-backup")
    assert code == 0, out
    assert table_state() == before


def test_encrypted_backups_in_s3(seeded, s3, settings, tmp_path):
    seeded()
    identity, public = age_keygen(tmp_path, "key")
    settings.ADCP_BACKUP_AGE_RECIPIENTS = [public]
    before = table_state()
    result = services.backup_create(encrypt=True)
    body = s3.client.get_object(Bucket=s3.name, Key=f"{s3.prefix}/{result.name}")["Body"].read()
    assert body.startswith(b"age-encryption.org/v1") and b"publisher-1" not in body

    [entry] = services.backup_list()  # no key: encrypted, dated by the object's LastModified
    assert entry.format == "adcp-backup (encrypted)" and entry.counts is None and entry.created is not None
    [entry] = services.backup_list(identity=identity)
    assert entry.counts == result.counts

    modify_database()
    services.backup_restore(file=result.name, identity=identity, safety_backup=False)
    assert table_state() == before


def test_a_backup_larger_than_the_multipart_threshold(seeded, s3, settings):
    threshold = 1 << 20
    configure(settings, s3_options(s3.endpoint, s3.name, s3.prefix, transfer_config=TransferConfig(
        multipart_threshold=threshold, multipart_chunksize=5 << 20, max_concurrency=2)))
    seeded(size=demo.DemoSize(tenants=4, products=400, agents=2, embeddings=400, dim=3072))
    before = table_state()
    result = services.backup_create(compression="none")
    assert result.size > 5 << 20  # more than one 5 MiB part
    head = s3.head(f"{s3.prefix}/{result.name}")
    assert head["ContentLength"] == result.size
    assert head["ETag"].strip('"').endswith("-2")  # S3's mark of an object assembled from two uploaded parts

    assert services.backup_validate(file=result.name).valid
    modify_database()
    services.backup_restore(file=result.name, safety_backup=False)
    assert table_state() == before


def test_nothing_is_visible_in_the_bucket_before_the_backup_is_complete(seeded, s3, settings, tmp_path):
    seeded()
    seen: list[list[str]] = []
    result = services.backup_create(progress=lambda event: seen.append(s3.keys()))
    assert seen and all(keys == [] for keys in seen)
    assert s3.keys() == [f"{s3.prefix}/{result.name}"]

    def fail(event: Any) -> None:
        if event.table == "product" and event.done:
            raise BackupError("stopped by the caller")

    settings.ADCP_BACKUP_AGE_RECIPIENTS = [age_keygen(tmp_path, "key")[1]]
    for encrypt in (False, True):
        with pytest.raises(BackupError, match="stopped by the caller"):
            services.backup_create(progress=fail, encrypt=encrypt)
        assert s3.keys() == [f"{s3.prefix}/{result.name}"]
        assert os.listdir(settings.ADCP_BACKUP_TEMP_DIR) == []


def test_a_storage_that_renames_on_collision_leaves_no_duplicate(s3):
    storage = BackupStorage()
    name = "adcp-backup-20250101-000000-00000000.jsonl"
    with pytest.raises(BackupError, match="renamed the backup"):
        with storage.writer(name) as out:
            out.write(b"our backup\n")
            storage.storage.save(name, ContentFile(b"written meanwhile by someone else\n"))
    assert s3.keys() == [f"{s3.prefix}/{name}"]
    assert storage.open(name).read() == b"written meanwhile by someone else\n"


def test_reading_streams_the_object_instead_of_downloading_it(seeded, s3):
    from storages.backends.s3 import S3File

    seeded()
    result = services.backup_create(compression="none")
    handle = BackupStorage().open(result.name)
    try:
        assert not isinstance(handle, S3File)  # S3File.read() would first copy the whole object into memory
        assert handle.read(17) == b'{"kind":"header",'
    finally:
        handle.close()
    with pytest.raises(FileNotFoundError):
        BackupStorage().open("adcp-backup-20250101-000000-00000000.jsonl")


def test_backup_info_shows_the_bucket_and_never_the_credentials(seeded, s3):
    seeded()
    services.backup_create()
    for args in ((), ("--json",)):
        code, out = command("backup_info", *args)
        assert code == 0
        assert f"s3://{s3.name}/{s3.prefix}/" in out
        assert SECRET_KEY not in out and ACCESS_KEY not in out


def test_prune_deletes_old_backups_from_s3(seeded, s3):
    seeded()
    names = [services.backup_create().name for _ in range(3)]
    dry = services.backup_prune(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0, dry_run=True)
    assert sorted(p.name for p in dry.removed) == sorted(names[:2])
    assert len(s3.keys()) == 3
    result = services.backup_prune(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert [p.name for p in result.kept] == [names[-1]]
    assert s3.keys() == [f"{s3.prefix}/{names[-1]}"]
    code, out = command("backup_list", "--json")
    assert [b["name"] for b in json.loads(out)["backups"]] == [names[-1]]


def test_project_settings_configure_s3_from_the_environment(seeded, s3, backup_env):
    seeded()
    result = services.backup_create()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "PYTHONPATH": str(PROJECT),
        "ADCP_BACKUP_S3_BUCKET": s3.name,
        "ADCP_BACKUP_S3_PREFIX": s3.prefix,
        "ADCP_BACKUP_S3_ENDPOINT_URL": s3.endpoint,
        "ADCP_BACKUP_S3_REGION": REGION,
        "ADCP_BACKUP_S3_ADDRESSING_STYLE": "path",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    listed = subprocess.run([sys.executable, str(PROJECT / "manage.py"), "backup_list", "--json", "--all-databases"],
                            env=env,
                            cwd=backup_env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert [b["name"] for b in json.loads(listed.stdout)["backups"]] == [result.name]
    info = subprocess.run([sys.executable, str(PROJECT / "manage.py"), "backup_info", "--json"], env=env,
                          cwd=backup_env, capture_output=True, text=True, timeout=120)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["storage"]["location"] == f"s3://{s3.name}/{s3.prefix}/"
    assert SECRET_KEY not in info.stdout + info.stderr
