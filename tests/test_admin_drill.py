"""The admin's "Test restore": its own permission, a job with progress and verdict, the verdict in the list."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from adcp_backup import services
from adcp_backup.display import format_size
from adcp_backup.models import BackupJob

from . import forge
from .admin_fixtures import client_for, finish, make_user
from .drill_fixtures import scratch_leftovers
from .helpers import table_state

pytestmark = pytest.mark.usefixtures("admin_db", "drill_dir")


def drill_url(name: str) -> str:
    return reverse("admin:adcp_backup_backupfile_drill", args=[name])


def test_test_restore_runs_a_drill_job_and_the_list_shows_its_verdict(admin_client, backup_env):
    backup = services.backup_create()
    state_before = table_state()
    listing = admin_client.get(reverse("admin:adcp_backup_backupfile_changelist"))
    assert 'value="Test restore"' in listing.content.decode()

    response = admin_client.post(drill_url(backup.name))
    job = BackupJob.objects.get(kind=BackupJob.Kind.DRILL)
    assert response.status_code == 302 and response["Location"] == reverse("admin:adcp_backup_backupfile_job",
                                                                             args=[job.pk])
    job = finish(job.pk)
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    assert job.result["restorable"] is True
    assert job.result["tables"]["product"]["rows_restored"] == backup.counts["product"]
    page = admin_client.get(response["Location"]).content.decode()
    assert "Restorable" in page and 'id="drill-tables"' in page
    assert f"peak memory {format_size(job.result['peak_memory_bytes'])}." in page  # the commands' units
    assert backup.counts and all(f"<th scope=\"row\">{t}</th>" in page for t in backup.counts)

    listing = admin_client.get(reverse("admin:adcp_backup_backupfile_changelist")).content.decode()
    assert "test restore:" in listing and "restores in" in listing
    assert table_state() == state_before
    assert scratch_leftovers("default") == []


def test_a_backup_that_does_not_restore_fails_its_job_with_the_report(admin_client, backup_env):
    good = services.backup_create(compression="none")

    def orphan_products(lines: list[Any]) -> list[Any]:
        tenant_ids = [line[0] for line in lines if isinstance(line, list)][:1]
        seen_table: list[str] = []
        kept = []
        for line in lines:
            if isinstance(line, dict) and line.get("kind") == "table":
                seen_table.append(line["name"])
            if isinstance(line, list) and seen_table and seen_table[-1] == "tenant" and line[0] in tenant_ids:
                continue
            kept.append(line)
        header = forge.header(kept)
        header["counts"] = {**header["counts"], "tenant": header["counts"]["tenant"] - len(tenant_ids)}
        return kept

    bad_name = "adcp-backup-20260101-000000-0badf00d.jsonl"
    forge.forge(Path(good.path), backup_env / "backups" / bad_name, orphan_products)
    response = admin_client.post(drill_url(bad_name))
    job = finish(BackupJob.objects.get(kind=BackupJob.Kind.DRILL).pk)
    assert job.status == BackupJob.Status.FAILED and "does not restore" in job.error
    assert job.result["restorable"] is False and job.result["problems"][0]["section"] == "product"
    page = admin_client.get(response["Location"]).content.decode()
    assert "Does not restore" in page and 'id="job-problems"' in page
    listing = admin_client.get(reverse("admin:adcp_backup_backupfile_changelist")).content.decode()
    assert "does not restore" in listing


@pytest.mark.parametrize("perms", [("view_backups", "validate_backups", "restore_backups")])
def test_test_restore_needs_its_own_permission(backup_env, perms):
    backup = services.backup_create()
    client = client_for(make_user("validator", perms=perms))
    listing = client.get(reverse("admin:adcp_backup_backupfile_changelist")).content.decode()
    assert 'value="Validate"' in listing and 'value="Test restore"' not in listing
    assert client.post(drill_url(backup.name)).status_code == 403
    assert client.get(drill_url(backup.name)).status_code == 405
    assert not BackupJob.objects.filter(kind=BackupJob.Kind.DRILL).exists()

    allowed = client_for(make_user("driller", perms=("view_backups", "drill_backups")))
    assert 'value="Test restore"' in allowed.get(reverse("admin:adcp_backup_backupfile_changelist")).content.decode()
    assert allowed.post(drill_url("../../etc/passwd")).status_code == 404
    job = finish(BackupJob.objects.get(pk=int(allowed.post(drill_url(backup.name))["Location"].rstrip("/")
                                                .rsplit("/", 1)[-1])).pk)
    assert job.status == BackupJob.Status.SUCCEEDED
