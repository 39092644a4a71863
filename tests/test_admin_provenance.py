"""The admin shows each backup's provenance, and restoring a file not signed here needs its own permission."""
from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta

from adcp_backup import services
from adcp_backup.models import BackupJob

from .admin_fixtures import client_for, make_user
from .helpers import table_state
from .scheduling_fixtures import write_backup
from .test_admin import change_data, job_from, u, upload


def cell(html: str, name: str) -> str:
    row = re.search(rf'<tr class="backup-row" data-name="{re.escape(name)}">(.*?)</tr>', html, re.S)
    assert row, f"{name} is not listed"
    return row.group(1)


def test_the_list_shows_signed_uploaded_unsigned_and_future_dated_files(admin_client, admin_db, backup_env,
                                                                        settings):
    own = services.backup_create(compression="gzip")
    foreign = backup_env / "foreign.jsonl.gz"
    shutil.copy(own.path, foreign)
    ours = settings.SECRET_KEY
    settings.SECRET_KEY = "another-installation-wrote-this-one-0123456789abcdef"
    other = services.backup_create(compression="gzip")  # signed by another key: unsigned here
    settings.SECRET_KEY = ours
    uploaded = job_from(upload(admin_client, foreign.read_bytes(), "mine-after-all.jsonl.gz"))
    assert uploaded.status == "succeeded", uploaded.error
    future = write_backup(backup_env / "backups", datetime.now(UTC) + timedelta(days=3))

    html = admin_client.get(u("changelist")).content.decode()
    assert '<span class="adcp-good">signed here</span>' in cell(html, own.name)
    assert 'data-provenance="unsigned"' in cell(html, other.name) and "adcp-bad" in cell(html, other.name)
    upload_cell = cell(html, uploaded.backup_name)
    assert '<span class="adcp-tag">uploaded</span>' in upload_cell and 'data-provenance="unsigned"' in upload_cell
    assert "in the future" in cell(html, future) and "in the future" not in cell(html, own.name)


def test_restoring_an_unsigned_file_needs_its_own_permission(admin_db, backup_env, settings):
    made = services.backup_create(compression="gzip")
    settings.SECRET_KEY = "a-new-installation-key-so-the-backup-is-foreign-0123456789"
    restorer = client_for(make_user("restorer", perms=("view_backups", "restore_backups")))
    page = restorer.get(u("restore", made.name)).content.decode()
    assert 'data-provenance="unsigned"' in page and "Can restore unsigned backups" in page
    change_data()
    changed = table_state()

    refused = restorer.post(u("restore", made.name), {"confirm_name": made.name})
    assert refused.status_code == 302 and not BackupJob.objects.filter(kind=BackupJob.Kind.RESTORE).exists()
    assert table_state() == changed
    dry = job_from(restorer.post(u("restore", made.name), {"dry_run": "on"}))
    assert dry.status == "succeeded" and dry.result["dry_run"] and table_state() == changed

    trusted = client_for(make_user("trusted", perms=("view_backups", "restore_backups",
                                                     "restore_unsigned_backups")))
    job = job_from(trusted.post(u("restore", made.name), {"confirm_name": made.name}))
    assert job.options.get("allow_unsigned") is True
    assert job.status == "succeeded", job.error
    assert table_state() != changed
