"""The admin's Backups page through the test client: every page and action, each role, and the failures."""
from __future__ import annotations

import base64
import gzip
import io
import json
import re
import shutil
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connections, transaction
from django.test import Client
from django.urls import reverse

from adcp_backup import jobs, services
from adcp_backup.models import BackupJob
from adcp_backup.progress import ProgressEvent
from adcp_backup.storage import BackupStorage

from .admin_fixtures import client_for, finish, make_user
from .helpers import table_state


def admin_jobs():
    """The jobs started from the admin (the services the tests call directly record theirs too)."""
    return BackupJob.objects.filter(origin="admin")


def u(name: str, *args: object) -> str:
    return reverse(f"admin:adcp_backup_backupfile_{name}", args=args)


def backup_dir(backup_env: Path) -> Path:
    return backup_env / "backups"


def job_from(response) -> BackupJob:
    assert response.status_code == 302, response.content[:500]
    job_id = int(response["Location"].rstrip("/").split("/")[-1])
    return finish(job_id)


def corrupt_copy(source: Path, target: Path) -> None:
    """The same backup with one product's name changed: its table checksum no longer matches."""
    lines = gzip.decompress(source.read_bytes()).split(b"\n")
    index = next(i for i, line in enumerate(lines) if b'"kind":"table","name":"product"' in line.replace(b" ", b""))
    changed = lines[index + 3].replace(b'"', b'"X', 1)
    assert changed != lines[index + 3]
    lines[index + 3] = changed
    target.write_bytes(gzip.compress(b"\n".join(lines)))


def change_data() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE product SET name = 'changed after the backup' WHERE id <= 5")
        cursor.execute("DELETE FROM product_embeddings WHERE id > 3")


# -- the page ----------------------------------------------------------------------------------------------
def test_admin_index_lists_backups_for_users_with_the_view_permission(admin_client, view_only_client, admin_db):
    for client in (admin_client, view_only_client):
        page = client.get(reverse("admin:index"))
        assert page.status_code == 200
        assert u("changelist").encode() in page.content
    nobody = client_for(make_user("staff-without-perms"))
    assert u("changelist").encode() not in nobody.get(reverse("admin:index")).content
    assert nobody.get(u("changelist")).status_code == 403


def test_list_shows_every_backup_newest_first_with_its_facts(admin_client, admin_db, backup_env):
    first = services.backup_create(compression="gzip")
    second = services.backup_create(compression="zstd")
    page = admin_client.get(u("changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert html.index(second.name) < html.index(first.name)
    for text in ("adcp-backup v3", "gzip", "zstd", "all tenants", "product&nbsp;60", "tenant&nbsp;4",
                 "product_embeddings&nbsp;12", "never", "Create backup now", "Validate", "Restore", "Download",
                 "Delete", "Upload a backup"):
        assert text in html, text
    assert 'class="breadcrumbs"' in html and "AdCP backups" in html
    assert page.context["rows"][0]["entry"].size == Path(second.path).stat().st_size


def test_search_filters_by_name_and_pages_hold_25(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    folder = backup_dir(backup_env)
    for i in range(30):
        shutil.copy(folder / made.name, folder / f"copy-{i:02d}.jsonl.gz")
    page = admin_client.get(u("changelist"))
    assert len(page.context["rows"]) == 25 and page.context["total"] == 31
    assert "Page 1 of 2" in page.content.decode()
    second = admin_client.get(u("changelist"), {"p": 2})
    assert len(second.context["rows"]) == 6
    found = admin_client.get(u("changelist"), {"q": "copy-1"})
    assert sorted(r["entry"].name for r in found.context["rows"]) == [f"copy-1{i}.jsonl.gz" for i in range(10)]
    assert admin_client.get(u("changelist"), {"q": "no-such"}).context["rows"] == []


def test_unreadable_file_is_listed_as_such(admin_client, admin_db, backup_env):
    folder = backup_dir(backup_env)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "garbage.jsonl").write_bytes(b"not a backup at all\n")
    html = admin_client.get(u("changelist")).content.decode()
    assert "garbage.jsonl" in html and "unreadable" in html
    assert u("validate", "garbage.jsonl") in html and u("restore", "garbage.jsonl") not in html


# -- create, validate --------------------------------------------------------------------------------------
def test_create_runs_a_job_that_writes_a_backup_and_records_who_and_where(admin_client, admin_db, backup_env,
                                                                         admin_user):
    response = admin_client.post(u("create"), {"compression": "zstd"}, REMOTE_ADDR="192.0.2.7")
    job = job_from(response)
    assert job.kind == "create" and job.status == "succeeded", job.error
    assert job.user == admin_user and job.remote_addr == "192.0.2.7" and job.origin == "admin"
    assert job.options == {"compression": "zstd"}
    assert job.backup_name.endswith(".jsonl.zst")
    assert job.result["counts"] == admin_db
    assert (backup_dir(backup_env) / job.backup_name).is_file()
    assert job.progress_table == "product_embeddings" and job.progress_done == 12
    page = admin_client.get(response["Location"])
    assert f"Backup {job.backup_name} written" in page.content.decode()
    assert job.backup_name in admin_client.get(u("changelist")).content.decode()


def test_create_rejects_an_unknown_compression(admin_client, admin_db):
    response = admin_client.post(u("create"), {"compression": "lzma"}, follow=True)
    assert "Choose a compression" in response.content.decode()
    assert not admin_jobs().exists()


def test_validate_shows_counts_checksums_and_the_verdict(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    response = admin_client.post(u("validate", made.name))
    job = job_from(response)
    assert job.status == "succeeded" and job.result["valid"] is True
    page = admin_client.get(response["Location"]).content.decode()
    assert "Valid" in page
    for table, rows in admin_db.items():
        assert job.result["checksums"][table] in page
        assert f"<th scope=\"row\">{table}</th><td>{rows}</td>" in page
    listing = admin_client.get(u("changelist")).content.decode()
    assert '<span class="adcp-good">valid</span>' in listing


def test_validate_of_a_corrupt_backup_lists_problems_by_section_and_row(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    corrupt_copy(Path(made.path), backup_dir(backup_env) / "corrupt.jsonl.gz")
    response = admin_client.post(u("validate", "corrupt.jsonl.gz"))
    job = job_from(response)
    assert job.status == "invalid" and job.result["valid"] is False
    problems = job.result["problems"]
    assert any(p["section"] == "product" for p in problems)
    page = admin_client.get(response["Location"]).content.decode()
    assert "Invalid:" in page and 'id="job-problems"' in page
    assert "<td>product</td>" in page
    assert "invalid (" in admin_client.get(u("changelist")).content.decode()


def test_actions_are_post_only(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    assert admin_client.get(u("create")).status_code == 405
    assert admin_client.get(u("validate", made.name)).status_code == 405
    assert admin_client.put(u("restore", made.name)).status_code == 405
    assert not admin_jobs().exists()


def test_every_change_needs_the_csrf_token(admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    strict = client_for(make_user("root", superuser=True), enforce_csrf_checks=True)
    before = table_state()
    for target, data in ((u("create"), {"compression": "gzip"}), (u("validate", made.name), {}),
                         (u("restore", made.name), {"confirm_name": made.name}), (u("delete", made.name), {})):
        assert strict.post(target, data).status_code == 403, target
    upload = strict.post(u("upload"), {"file": io.BytesIO(Path(made.path).read_bytes())})
    assert upload.status_code == 403
    assert not admin_jobs().exists()
    assert BackupStorage().names() == [made.name]
    assert table_state() == before
    assert not any((backup_dir(backup_env) / ".incoming").iterdir())


# -- restore -------------------------------------------------------------------------------------------------
def test_restore_confirmation_shows_the_plan_with_dry_run_ticked(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    change_data()
    page = admin_client.get(u("restore", made.name))
    assert page.status_code == 200
    html = page.content.decode()
    assert re.search(r'<input type="checkbox" name="dry_run"[^>]* checked>', html)
    assert 'name="confirm_name"' in html
    assert "<th scope=\"row\">product_embeddings</th><td>3</td><td>12</td>" in html
    assert made.name in html and 'method="post"' in html


def test_dry_run_restore_changes_nothing_and_reports_the_differences(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    change_data()
    changed = table_state()
    job = job_from(admin_client.post(u("restore", made.name), {"dry_run": "on"}))
    assert job.status == "succeeded", job.error
    assert job.options == {"dry_run": True}
    assert job.result["dry_run"] is True
    assert job.result["changes"]["product_embeddings"]["added"] == 9
    assert table_state() == changed


def test_real_restore_needs_the_typed_name_then_restores_every_row(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    original = table_state()
    change_data()
    changed = table_state()

    for data in ({"confirm_name": "something else"}, {}):
        refused = admin_client.post(u("restore", made.name), data)
        assert refused.status_code == 200 and "Type the backup" in refused.content.decode()
    assert not admin_jobs().exists() and table_state() == changed

    response = admin_client.post(u("restore", made.name), {"confirm_name": made.name})
    job = job_from(response)
    assert job.status == "succeeded", job.error
    assert job.result["dry_run"] is False and job.result["restored"] == admin_db
    assert table_state() == original
    safety = job.result["safety_backup"]
    assert safety and (backup_dir(backup_env) / safety).is_file()
    page = admin_client.get(response["Location"]).content.decode()
    assert "The data was replaced." in page and safety in page


def test_failed_restore_leaves_the_database_unchanged_and_the_job_shows_why(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    corrupt_copy(Path(made.path), backup_dir(backup_env) / "corrupt.jsonl.gz")
    change_data()
    before = table_state()
    response = admin_client.post(u("restore", "corrupt.jsonl.gz"), {"confirm_name": "corrupt.jsonl.gz"})
    job = job_from(response)
    assert job.status == "invalid" and job.result["refused"] is True
    assert job.error.startswith("The file is not a valid backup: ")
    assert table_state() == before
    # Validated before anything else: no safety backup was taken for a file that fails its checks.
    assert sorted(BackupStorage().names()) == sorted([made.name, "corrupt.jsonl.gz"])
    page = admin_client.get(response["Location"]).content.decode()
    assert 'id="job-error"' in page and 'id="restore-refused"' in page
    listing = admin_client.get(u("changelist")).content.decode()
    assert "Invalid: The file is not a valid backup" in listing


def test_only_one_restore_at_a_time_and_no_backup_during_a_restore(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    running = BackupJob.objects.create(kind="restore", status="running", backup_name=made.name, origin="admin")
    before = table_state()
    refused = admin_client.post(u("restore", made.name), {"confirm_name": made.name}, follow=True)
    assert f"A restore of {made.name} (job {running.pk}) is running" in refused.content.decode()
    refused = admin_client.post(u("create"), {"compression": "gzip"}, follow=True)
    assert "is running" in refused.content.decode()
    assert list(admin_jobs().values_list("pk", flat=True)) == [running.pk]
    assert table_state() == before and BackupStorage().names() == [made.name]
    page = admin_client.get(u("restore", made.name)).content.decode()
    assert "another one cannot start" in page
    running.delete()


def test_a_restore_is_refused_while_a_backup_runs(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    running = BackupJob.objects.create(kind="create", status="running", origin="admin")
    refused = admin_client.post(u("restore", made.name), {"confirm_name": made.name}, follow=True)
    assert "A backup (job" in refused.content.decode()
    assert admin_jobs().count() == 1
    running.delete()


# -- download, delete ----------------------------------------------------------------------------------------
def test_download_streams_the_exact_bytes(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    response = admin_client.get(u("download", made.name))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == f'attachment; filename="{made.name}"'
    assert int(response["Content-Length"]) == made.size
    assert b"".join(response.streaming_content) == Path(made.path).read_bytes()


def test_delete_asks_then_deletes_and_records_it(admin_client, admin_db, backup_env, admin_user):
    made = services.backup_create(compression="gzip")
    confirm = admin_client.get(u("delete", made.name))
    assert confirm.status_code == 200 and "cannot be undone" in confirm.content.decode()
    assert BackupStorage().names() == [made.name]
    done = admin_client.post(u("delete", made.name), follow=True)
    assert f"The backup {made.name} was deleted." in done.content.decode()
    assert BackupStorage().names() == []
    job = admin_jobs().get()
    assert (job.kind, job.status, job.backup_name, job.user) == ("delete", "succeeded", made.name, admin_user)
    assert admin_client.post(u("delete", made.name)).status_code == 404


# -- upload --------------------------------------------------------------------------------------------------
def upload(client: Client, content: bytes, name: str):
    handle = io.BytesIO(content)
    handle.name = name
    return client.post(u("upload"), {"file": handle})


def test_upload_of_a_valid_backup_is_listed_under_a_generated_name(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    content = Path(made.path).read_bytes()
    assert admin_client.get(u("upload")).status_code == 200
    job = job_from(upload(admin_client, content, "../../etc/cron.d/evil name.jsonl.gz"))
    assert job.kind == "upload" and job.status == "succeeded", job.error
    assert job.backup_name.startswith("adcp-upload-") and job.backup_name.endswith(".jsonl.gz")
    assert job.options["original_name"] == "evil name.jsonl.gz"
    assert (backup_dir(backup_env) / job.backup_name).read_bytes() == content
    assert sorted(BackupStorage().names()) == sorted([made.name, job.backup_name])
    assert not any((backup_dir(backup_env) / ".incoming").iterdir())
    assert '<span class="adcp-good">valid</span>' in admin_client.get(u("changelist")).content.decode()


def test_corrupt_upload_is_not_kept_and_the_user_learns_why(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    corrupt_copy(Path(made.path), backup_env / "corrupt.jsonl.gz")
    for content in ((backup_env / "corrupt.jsonl.gz").read_bytes(), b"\x00\x01 random bytes"):
        response = upload(admin_client, content, "corrupt.jsonl.gz")
        job = job_from(response)
        assert job.status == "invalid"
        assert "not a valid backup and was not kept" in job.error
        page = admin_client.get(response["Location"]).content.decode()
        assert "not a valid backup and was not kept" in page
    assert BackupStorage().names() == [made.name]
    assert not any((backup_dir(backup_env) / ".incoming").iterdir())


def test_upload_over_the_size_limit_is_refused(admin_client, admin_db, backup_env, settings):
    made = services.backup_create(compression="gzip")
    settings.ADCP_BACKUP_UPLOAD_MAX_SIZE = 100
    response = upload(admin_client, Path(made.path).read_bytes(), "big.jsonl.gz")
    assert response.status_code == 302 and response["Location"] == u("upload")
    follow = admin_client.get(u("upload"))
    assert "larger than the upload limit of 100 bytes" in follow.content.decode()
    assert BackupStorage().names() == [made.name] and not admin_jobs().exists()
    assert not any((backup_dir(backup_env) / ".incoming").iterdir())
    # Declared larger than the limit: refused before the body is read.
    early = upload(admin_client, b"\0" * (200 * 1024), "huge.jsonl.gz")
    assert early.status_code == 302 and early["Location"] == u("upload")
    assert "larger than the upload limit" in admin_client.get(u("upload")).content.decode()
    assert BackupStorage().names() == [made.name] and not admin_jobs().exists()
    assert not any((backup_dir(backup_env) / ".incoming").iterdir())


def test_upload_needs_a_file(admin_client, admin_db, backup_env):
    response = admin_client.post(u("upload"), {}, follow=True)
    assert "Choose one non-empty backup file" in response.content.decode()
    assert not admin_jobs().exists()


# -- permissions -----------------------------------------------------------------------------------------------
def test_view_only_user_sees_the_list_without_buttons_and_gets_403_on_actions(view_only_client, admin_db,
                                                                              backup_env):
    made = services.backup_create(compression="gzip")
    html = view_only_client.get(u("changelist")).content.decode()
    assert made.name in html
    for button in ("Create backup now", 'value="Validate"', ">Restore<", ">Download<", ">Delete<", "Upload a backup"):
        assert button not in html, button
    before = table_state()
    assert view_only_client.post(u("create"), {"compression": "gzip"}).status_code == 403
    assert view_only_client.post(u("validate", made.name)).status_code == 403
    assert view_only_client.get(u("restore", made.name)).status_code == 403
    assert view_only_client.post(u("restore", made.name), {"confirm_name": made.name}).status_code == 403
    assert view_only_client.get(u("download", made.name)).status_code == 403
    assert view_only_client.get(u("delete", made.name)).status_code == 403
    assert view_only_client.post(u("delete", made.name)).status_code == 403
    assert view_only_client.get(u("upload")).status_code == 403
    assert view_only_client.post(u("upload"), {"file": io.BytesIO(b"x")}).status_code == 403
    assert not admin_jobs().exists() and BackupStorage().names() == [made.name] and table_state() == before
    assert view_only_client.get(reverse("admin:adcp_backup_backupjob_changelist")).status_code == 403


def test_view_and_restore_user_can_restore_and_nothing_else(restorer_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    original = table_state()
    change_data()
    html = restorer_client.get(u("changelist")).content.decode()
    assert ">Restore<" in html
    for button in ("Create backup now", 'value="Validate"', ">Download<", ">Delete<", "Upload a backup"):
        assert button not in html, button
    assert restorer_client.post(u("create"), {"compression": "gzip"}).status_code == 403
    assert restorer_client.post(u("validate", made.name)).status_code == 403
    assert restorer_client.get(u("download", made.name)).status_code == 403
    assert restorer_client.post(u("delete", made.name)).status_code == 403
    assert restorer_client.get(u("restore", made.name)).status_code == 200
    job = job_from(restorer_client.post(u("restore", made.name), {"confirm_name": made.name}))
    assert job.status == "succeeded", job.error
    assert table_state() == original


def test_non_staff_user_is_sent_to_the_login_page_everywhere(outsider_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    before = table_state()
    for method, target in (("get", u("changelist")), ("post", u("create")), ("post", u("validate", made.name)),
                           ("get", u("restore", made.name)), ("post", u("restore", made.name)),
                           ("get", u("download", made.name)), ("post", u("delete", made.name)),
                           ("get", u("upload")), ("get", u("job", 1)), ("get", u("job_progress", 1))):
        response = getattr(outsider_client, method)(target)
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login")), target
    assert not admin_jobs().exists() and BackupStorage().names() == [made.name] and table_state() == before


def test_restore_and_upload_disappear_when_the_setting_is_off(admin_client, admin_db, backup_env, settings):
    made = services.backup_create(compression="gzip")
    settings.ADCP_BACKUP_ADMIN_RESTORE = False
    html = admin_client.get(u("changelist")).content.decode()
    assert ">Restore<" not in html and "Upload a backup" not in html and ">Download<" in html
    assert admin_client.get(u("restore", made.name)).status_code == 404
    assert admin_client.post(u("restore", made.name), {"confirm_name": made.name}).status_code == 404
    assert admin_client.get(u("upload")).status_code == 404
    assert admin_client.post(u("upload"), {"file": io.BytesIO(Path(made.path).read_bytes())}).status_code == 404
    assert not admin_jobs().exists()


# -- names from URLs ------------------------------------------------------------------------------------------
TRAVERSALS = [
    "../backups/x.jsonl.gz",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "..",
    ".incoming",
    "outside.jsonl.gz",
]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_names_outside_the_storage_are_refused(admin_client, admin_db, backup_env, name):
    made = services.backup_create(compression="gzip")
    shutil.copy(made.path, backup_env / "outside.jsonl.gz")  # a real backup, in the working directory only
    before = table_state()
    base = "/admin/adcp_backup/backupfile/file/"
    for action, method in (("validate", "post"), ("restore", "get"), ("restore", "post"), ("download", "get"),
                           ("delete", "get"), ("delete", "post")):
        response = getattr(admin_client, method)(f"{base}{name}/{action}/", {"confirm_name": name})
        assert response.status_code == 404, (action, method, response.status_code)
    assert not admin_jobs().exists()
    assert BackupStorage().names() == [made.name] and (backup_env / "outside.jsonl.gz").is_file()
    assert table_state() == before


# -- jobs --------------------------------------------------------------------------------------------------------
def test_progress_endpoint_reports_live_progress_of_a_running_job(admin_client, admin_db):
    job = BackupJob.objects.create(kind="restore", status="running", backup_name="b.jsonl.gz")
    recorder = jobs.JobProgressRecorder(job.pk)
    recorder(ProgressEvent("restore", "product", 40, 60))
    data = admin_client.get(u("job_progress", job.pk)).json()
    assert data["status"] == "running" and data["finished"] is False
    assert (data["table"], data["done"], data["total"], data["percent"]) == ("product", 40, 60, 66)
    page = admin_client.get(u("job", job.pk)).content.decode()
    assert "data-job-progress" in page and "restore product 40 of 60 rows" in page
    listing = admin_client.get(u("changelist")).content.decode()
    assert 'id="running-jobs"' in listing and "restore product 40 of 60 rows" in listing
    recorder.clear()
    job.delete()


def test_run_job_runs_a_job_only_once(admin_db, backup_env):
    job = BackupJob.objects.create(kind="create", options={"compression": "none"}, origin="celery")
    jobs.run_job(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and len(BackupStorage().names()) == 1
    jobs.run_job(job.pk)
    assert len(BackupStorage().names()) == 1


def test_unknown_job_is_a_404(admin_client, admin_db):
    assert admin_client.get(u("job", 999)).status_code == 404
    assert admin_client.get(u("job_progress", 999)).status_code == 404


def test_job_history_is_read_only_for_everyone(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    job_from(admin_client.post(u("validate", made.name)))
    job = admin_jobs().get()
    history = reverse("admin:adcp_backup_backupjob_changelist")
    page = admin_client.get(history)
    assert page.status_code == 200 and made.name in page.content.decode()
    assert "delete_selected" not in page.content.decode()
    assert admin_client.get(reverse("admin:adcp_backup_backupjob_add")).status_code == 403
    change = admin_client.get(reverse("admin:adcp_backup_backupjob_change", args=[job.pk]))
    assert change.status_code == 200 and 'name="_save"' not in change.content.decode()
    assert admin_client.post(reverse("admin:adcp_backup_backupjob_change", args=[job.pk]),
                             {"status": "failed"}).status_code == 403
    assert admin_client.post(reverse("admin:adcp_backup_backupjob_delete", args=[job.pk]),
                             {"post": "yes"}).status_code == 403
    job.refresh_from_db()
    assert job.status == "succeeded"


def test_a_job_left_running_by_a_dead_process_stops_blocking_after_a_while(admin_client, admin_db, backup_env,
                                                                           settings):
    made = services.backup_create(compression="gzip")
    settings.ADCP_BACKUP_JOB_STALE_AFTER = 3600
    stale = BackupJob.objects.create(kind="restore", status="running", backup_name=made.name)
    BackupJob.objects.filter(pk=stale.pk).update(created_at=stale.created_at - timedelta(hours=2))
    job = job_from(admin_client.post(u("restore", made.name), {"dry_run": "on"}))
    assert job.pk != stale.pk and job.status == "succeeded", job.error
    stale.delete()


def test_delete_that_fails_is_recorded_as_failed(admin_client, admin_db, backup_env):
    services.backup_create(compression="gzip")
    folder = backup_dir(backup_env) / "not-a-file.jsonl.gz"  # a folder with content: the storage cannot delete it
    folder.mkdir()
    (folder / "inside").write_bytes(b"kept")
    response = admin_client.post(u("delete", folder.name), follow=True)
    assert response.status_code == 200
    assert "was not deleted" in response.content.decode()
    assert (folder / "inside").read_bytes() == b"kept"
    job = admin_jobs().get()
    assert (job.kind, job.status, job.backup_name) == ("delete", "failed", folder.name) and job.error


@pytest.fixture
def celery_broker(settings, monkeypatch):
    """A real Redis broker (database 3) as the current Celery app's, emptied before and after."""
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)  # Celery prefers it to the app's own broker
    celery = pytest.importorskip("celery")
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/3"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    client.delete("celery")
    previous = celery.current_app._get_current_object()
    app = celery.Celery("adcp-backup-test", broker=url, set_as_current=True)
    settings.CELERY_BROKER_URL = url
    settings.ADCP_BACKUP_JOB_RUNNER = "auto"
    yield client
    client.delete("celery")
    app.close()
    previous.set_current()


def test_with_a_broker_the_job_is_queued_as_the_celery_task(admin_client, admin_db, backup_env, celery_broker):
    response = admin_client.post(u("create"), {"compression": "gzip"})
    job_id = int(response["Location"].rstrip("/").split("/")[-1])
    messages = [json.loads(m) for m in celery_broker.lrange("celery", 0, -1)]
    assert [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0]) for m in messages] == [
        ("adcp_backup.run_job", [job_id])
    ]
    assert BackupJob.objects.get(pk=job_id).status == "pending" and BackupStorage().names() == []
    jobs.run_job(job_id)  # what the worker's task does
    job = BackupJob.objects.get(pk=job_id)
    assert job.status == "succeeded" and BackupStorage().names() == [job.backup_name]


def test_progress_is_visible_while_the_job_holds_a_write_transaction(admin_client, admin_db):
    """What a restore does to its connection: an open write transaction. Progress must still get out."""
    job = BackupJob.objects.create(kind="restore", status="running", backup_name="b.jsonl.gz")
    reported, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def restore_like() -> None:
        try:
            with transaction.atomic():
                with connections["default"].cursor() as cursor:
                    cursor.execute("DELETE FROM product_embeddings")
                jobs.JobProgressRecorder(job.pk)(ProgressEvent("restore", "product_embeddings", 7, 12))
                reported.set()
                release.wait(30)
                transaction.set_rollback(True)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
            reported.set()
        finally:
            connections.close_all()

    worker = threading.Thread(target=restore_like)
    worker.start()
    try:
        assert reported.wait(30)
        data = admin_client.get(u("job_progress", job.pk)).json()
    finally:
        release.set()
        worker.join(30)
    assert not errors
    assert (data["status"], data["table"], data["done"], data["total"]) == ("running", "product_embeddings", 7, 12)
    assert BackupJob.objects.get(pk=job.pk).progress_done == 0  # nothing was written into the transaction
    assert table_state()["product_embeddings"]  # rolled back
    jobs.JobProgressRecorder(job.pk).clear()
    job.delete()


def test_a_misconfigured_runner_is_a_clear_message_and_a_failed_job(admin_client, admin_db, settings):
    settings.ADCP_BACKUP_JOB_RUNNER = "cron"
    response = admin_client.post(u("create"), {"compression": "gzip"}, follow=True)
    assert "ADCP_BACKUP_JOB_RUNNER must be auto, thread or celery" in response.content.decode()
    job = admin_jobs().get()
    assert job.status == "failed" and "ADCP_BACKUP_JOB_RUNNER" in job.error


def test_restore_confirmation_offers_the_tenants_in_the_file_and_restores_only_the_chosen_one(
        admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    original = table_state()
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE product SET name = 'damaged' WHERE tenant_id IN (1, 2)")
    damaged = table_state()

    html = admin_client.get(u("restore", made.name)).content.decode()
    assert 'id="tenant-scope"' in html
    assert all(f'value="publisher-{i}"' in html for i in range(1, 5))

    response = admin_client.post(u("restore", made.name), {"confirm_name": made.name, "tenants": ["publisher-1"]})
    job = job_from(response)
    assert job.status == "succeeded", job.error
    assert job.options["tenants"] == ["publisher-1"]
    after = table_state()
    products = {row[0][0]: row for row in after["product"]}
    for row in original["product"]:
        if row[1][0] == 1:
            assert products[row[0][0]] == row  # the chosen tenant is back as it was in the backup
    for row in damaged["product"]:
        if row[1][0] != 1:
            assert products[row[0][0]] == row  # every other tenant is as it was before the restore

    refused = admin_client.post(u("restore", made.name), {"confirm_name": made.name, "tenants": ["nobody"]})
    assert refused.status_code == 200 and "not one of the available choices" in refused.content.decode()


# -- the history, verdicts and operator tools -------------------------------------------------------------
def test_every_admin_action_is_in_the_history_and_in_django_recent_actions(admin_client, admin_db, backup_env):
    from django.contrib.admin.models import LogEntry

    job = job_from(admin_client.post(u("create"), {"compression": "gzip"}))
    admin_client.get(u("download", job.backup_name))
    download = admin_jobs().get(kind="download")
    assert download.status == "succeeded" and download.backup_name == job.backup_name and download.user
    messages = set(LogEntry.objects.values_list("change_message", flat=True))
    assert "Create of a new backup started" in messages
    assert f"Downloaded {job.backup_name}" in messages
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert 'class="actionlist"' in index and "Download " in index  # Django's "Recent actions"


def test_job_page_shows_duration_and_staff_who_may_restore_can_mark_a_stuck_job_failed(
        admin_client, view_only_client, restorer_client, admin_db):
    stuck = BackupJob.objects.create(kind="restore", status="running", backup_name="b.jsonl.gz", origin="admin")
    page = view_only_client.get(u("job", stuck.pk)).content.decode()
    assert 'id="job-duration"' in page and "Mark this job failed" not in page
    assert view_only_client.post(u("job_fail", stuck.pk)).status_code == 403
    assert BackupJob.objects.get(pk=stuck.pk).status == "running"
    page = restorer_client.get(u("job", stuck.pk)).content.decode()
    assert "Mark this job failed" in page
    done = restorer_client.post(u("job_fail", stuck.pk), follow=True).content.decode()
    stuck.refresh_from_db()
    assert stuck.status == "failed" and "Marked failed by restorer" in stuck.error and stuck.finished_at
    assert "no longer blocks" in done
    # and a restore can start again
    made = services.backup_create(compression="gzip")
    assert job_from(restorer_client.post(u("restore", made.name), {"dry_run": "on"})).status == "succeeded"


def test_a_restore_job_of_a_dead_server_process_stops_blocking(admin_client, admin_db, backup_env):
    import platform
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    made = services.backup_create(compression="gzip")
    dead = BackupJob.objects.create(kind="restore", status="running", backup_name=made.name, origin="admin",
                                    runner=f"{proc.pid}@{platform.node()}")
    job = job_from(admin_client.post(u("restore", made.name), {"dry_run": "on"}))
    assert job.status == "succeeded"
    dead.refresh_from_db()
    assert dead.status == "failed" and "server restarted" in dead.error


def test_dry_runs_and_invalid_verdicts_are_marked_in_the_list(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    job_from(admin_client.post(u("restore", made.name), {"dry_run": "on"}))
    corrupt_copy(Path(made.path), backup_dir(backup_env) / "corrupt.jsonl.gz")
    job_from(admin_client.post(u("validate", "corrupt.jsonl.gz")))
    listing = admin_client.get(u("changelist")).content.decode()
    assert "Restore (dry run)" in listing and ">Invalid: The file is not a valid backup" in listing


def test_a_file_known_to_be_invalid_is_not_offered_for_restore(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    corrupt_copy(Path(made.path), backup_dir(backup_env) / "corrupt.jsonl.gz")
    verdict = job_from(admin_client.post(u("validate", "corrupt.jsonl.gz")))
    listing = admin_client.get(u("changelist")).content.decode()
    row = listing[listing.index('data-name="corrupt.jsonl.gz"'):]
    row = row[:row.index("</tr>")]
    assert u("restore", "corrupt.jsonl.gz") not in row and "invalid (1 problem)" in row
    page = admin_client.get(u("restore", "corrupt.jsonl.gz")).content.decode()
    assert 'id="restore-refused"' in page and 'id="restore-form"' not in page
    assert u("job", verdict.pk) in page
    before = table_state()
    refused = admin_client.post(u("restore", "corrupt.jsonl.gz"), {"confirm_name": "corrupt.jsonl.gz"})
    assert refused.status_code == 409
    assert not admin_jobs().filter(kind="restore").exists() and table_state() == before
    assert sorted(BackupStorage().names()) == sorted([made.name, "corrupt.jsonl.gz"])  # no safety backup


def test_restore_page_knows_the_verdict_and_the_encryption(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    page = admin_client.get(u("restore", made.name)).content.decode()
    assert "never validated" in page and "not encrypted" in page
    job_from(admin_client.post(u("validate", made.name)))
    page = admin_client.get(u("restore", made.name)).content.decode()
    assert '<span class="adcp-good">valid</span>' in page


def test_restore_form_keeps_the_tenant_list_after_an_error(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    page = admin_client.post(u("restore", made.name), {"confirm_name": "wrong"}).content.decode()
    assert "Type the backup" in page and 'id="tenant-scope"' in page


def test_create_offers_encryption_only_when_recipients_are_configured(admin_client, admin_db, backup_env,
                                                                      settings):
    pyrage = pytest.importorskip("pyrage")
    assert 'name="encrypt"' not in admin_client.get(u("changelist")).content.decode()
    identity = pyrage.x25519.Identity.generate()
    settings.ADCP_BACKUP_AGE_RECIPIENTS = [str(identity.to_public())]
    assert 'name="encrypt"' in admin_client.get(u("changelist")).content.decode()
    job = job_from(admin_client.post(u("create"), {"compression": "gzip", "encrypt": "on"}))
    assert job.status == "succeeded" and job.result["encrypted"] is True and job.backup_name.endswith(".age")
    # without an identity the browser gets no command-line advice
    page = admin_client.get(u("restore", job.backup_name), follow=True).content.decode()
    assert "--identity" not in page and "encrypted" in page


def test_filters_and_sorting(admin_client, admin_db, backup_env):
    regular = services.backup_create(compression="gzip")
    safety = services.backup_create(compression="none", purpose="safety")
    shutil.copy(regular.path, backup_dir(backup_env) / "adcp-upload-20250101-000000-abcd1234.jsonl.gz")

    def names(**params: str) -> list[str]:
        page = admin_client.get(u("changelist"), params).content.decode()
        return re.findall(r'<tr class="backup-row" data-name="([^"]+)"', page)

    assert names(show="safety") == [safety.name]
    assert names(show="uploaded") == ["adcp-upload-20250101-000000-abcd1234.jsonl.gz"]
    assert set(names(show="regular")) == {regular.name}
    assert names(o="-size")[0] == safety.name and names(o="size")[-1] == safety.name
    assert names(o="name") == sorted(names(o="name"))
    assert names(o="-name") == sorted(names(o="name"), reverse=True)


def test_list_uses_the_command_line_units_thousands_separators_and_local_time(admin_client, admin_db,
                                                                                backup_env, settings):
    from adcp_backup.templatetags.adcp_backup_admin import size, thousands

    assert (thousands(1234567), size(2048), size(5 * 1024**2)) == ("1,234,567", "2.0 KiB", "5.0 MiB")
    settings.TIME_ZONE = "Europe/Paris"
    services.backup_create(compression="gzip")
    page = admin_client.get(u("changelist")).content.decode()
    assert "KiB" in page and " KB" not in page
    assert re.search(r"\b(CET|CEST)\b", page)


def test_bulk_delete_goes_through_django_confirmation_page(admin_client, admin_db, backup_env):
    first = services.backup_create(compression="gzip")
    second = services.backup_create(compression="gzip")
    third = services.backup_create(compression="gzip")
    data = {"action": "delete_selected", "_selected_action": [first.name, second.name]}
    confirm = admin_client.post(u("changelist"), data)
    assert confirm.status_code == 200 and "admin/delete_selected_confirmation.html" in [
        t.name for t in confirm.templates]
    assert len(BackupStorage().names()) == 3
    done = admin_client.post(u("changelist"), {**data, "post": "yes"}, follow=True).content.decode()
    assert "2 backups deleted." in done
    assert BackupStorage().names() == [third.name]
    assert admin_jobs().filter(kind="delete", status="succeeded").count() == 2


def test_bulk_delete_needs_the_delete_permission(view_only_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    data = {"action": "delete_selected", "_selected_action": [made.name], "post": "yes"}
    assert view_only_client.post(u("changelist"), data).status_code == 403
    assert BackupStorage().names() == [made.name]


def test_prune_previews_then_removes_after_confirmation(admin_client, admin_db, backup_env):
    made = [services.backup_create(compression="gzip") for _ in range(3)]
    policy = {"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, "keep_safety": 0}
    preview = admin_client.get(u("prune"), policy).content.decode()
    assert "2 backups would be removed" in preview and 'id="prune-form"' in preview
    assert len(BackupStorage().names()) == 3
    assert BackupJob.objects.filter(kind="prune", dry_run=True).exists()
    done = admin_client.post(u("prune"), {**policy, "confirm": "yes"}, follow=True).content.decode()
    assert "2 backups removed" in done
    assert BackupStorage().names() == [made[-1].name]
    assert admin_jobs().filter(kind="prune", dry_run=False, status="succeeded").exists()


def test_prune_has_a_rule_of_its_own_for_tenant_backups(admin_client, admin_db, backup_env, seeded, settings):
    seeded("default")
    whole = services.backup_create(compression="gzip")
    tenant = [services.backup_create(compression="gzip", tenants=["publisher-1"]) for _ in range(2)]
    settings.ADCP_BACKUP_KEEP_TENANT = 1
    policy = {"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, "keep_safety": 0}
    form = admin_client.get(u("prune")).content.decode()
    assert 'name="keep_tenant" value="1"' in form  # the setting's count, offered as the field's value
    preview = admin_client.get(u("prune"), policy).content.decode()  # a form from before the rule: the setting
    assert "1 backup would be removed" in preview
    assert '<input type="hidden" name="keep_tenant" value="1">' in preview
    done = admin_client.post(u("prune"), {**policy, "keep_tenant": 0, "confirm": "yes"}, follow=True)
    assert "2 backups removed" in done.content.decode()
    assert BackupStorage().names() == [whole.name]
    assert not {made.name for made in tenant} & set(BackupStorage().names())


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_database_choice_when_the_admin_manages_several(admin_client, admin_db, backup_env, settings):
    other = next((alias for alias in ("postgresql", "mysql") if alias in settings.DATABASES), None)
    if other is None:
        pytest.skip("needs a second database (ADCP_TEST_POSTGRES_URL or ADCP_TEST_MYSQL_URL)")
    assert '<select name="database"' not in admin_client.get(u("changelist")).content.decode()
    settings.ADCP_BACKUP_ADMIN_DATABASES = ["default", other]
    page = admin_client.get(u("changelist")).content.decode()
    assert f'<option value="{other}">{other}</option>' in page
    job = job_from(admin_client.post(u("create"), {"compression": "gzip", "database": other}))
    assert job.database == other
    made = services.backup_create(compression="gzip")
    plan = admin_client.get(u("restore", made.name), {"database": other}).content.decode()
    assert f"into the database <strong>{other}</strong>" in plan
    assert admin_client.post(u("create"), {"compression": "gzip", "database": "nope"}).status_code == 302
    assert not admin_jobs().filter(database="nope").exists()


def test_two_restores_submitted_at_once_get_a_message_never_a_500(admin_client, admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def submit() -> None:
        barrier.wait()
        response = admin_client.post(u("restore", made.name), {"dry_run": "on"})
        statuses.append(response.status_code)
        connections.close_all()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [302, 302]
    for job in admin_jobs().filter(kind="restore"):
        finish(job.pk)


@pytest.mark.parametrize("site, has_history", [("ops", True), ("bare", False)])
def test_the_page_on_a_custom_admin_site_links_only_within_that_site(site, has_history, admin_user, admin_db,
                                                                   backup_env, settings):
    settings.ROOT_URLCONF = "tests.custom_admin_urls"
    client = client_for(admin_user)
    base = f"/{site}/adcp_backup/backupfile/"
    made = services.backup_create(compression="gzip")

    def links(page_path: str) -> tuple[str, set[str]]:
        page = client.get(page_path)
        assert page.status_code == 200, page_path
        html = page.content.decode()
        hrefs = set(re.findall(r'(?:href|action|formaction)="(/[^"]*)"', html))
        hrefs.discard("/")  # the admin's own "View site" link
        assert hrefs and all(h.startswith(f"/{site}/") or h.startswith("/static/") for h in hrefs), (page_path, hrefs)
        return html, hrefs

    html, hrefs = links(base)
    assert (f'href="/{site}/adcp_backup/backupjob/"' in html) is has_history
    assert {f"{base}file/{made.name}/restore/", f"{base}file/{made.name}/delete/", f"{base}upload/",
            f"{base}prune/"} <= hrefs
    for page_path in ("upload/", "prune/", f"file/{made.name}/restore/", f"file/{made.name}/delete/"):
        links(base + page_path)
    created = client.post(f"{base}create/", {"compression": "gzip"})
    assert created.status_code == 302 and created["Location"].startswith(f"{base}jobs/")
    job = finish(int(created["Location"].rstrip("/").split("/")[-1]))
    detail, _ = links(created["Location"])
    assert job.status == "succeeded" and f'href="{base}"' in detail
    assert client.get(f"{base}jobs/{job.pk}/progress/").json()["url"] == f"{base}jobs/{job.pk}/"
    validated = client.post(f"{base}file/{made.name}/validate/")
    assert validated.status_code == 302 and validated["Location"].startswith(f"{base}jobs/")
    finish(int(validated["Location"].rstrip("/").split("/")[-1]))
    deleted = client.post(f"{base}file/{made.name}/delete/")
    assert deleted.status_code == 302 and deleted["Location"] == base


def test_messages_in_the_browser_carry_no_command_line_advice(admin_client, admin_db, backup_env):
    from adcp_backup.display import for_browser

    assert for_browser("table product is missing (use --create-schema on an empty database)") == \
        "table product is missing"
    assert "--" not in for_browser("pass --identity PATH or set ADCP_BACKUP_AGE_IDENTITY")
    services.backup_create(compression="gzip")
    zero = {"keep_last": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, "keep_safety": 0}
    page = admin_client.get(u("prune"), zero).content.decode()
    assert "every keep count is 0" in page and "--keep" not in page


def test_a_command_line_validation_and_a_scheduled_backup_appear_in_the_admin(admin_client, admin_db, backup_env):
    from django.core.management import call_command

    tasks = pytest.importorskip("adcp_backup.tasks")
    scheduled = tasks.create_backup.run()
    call_command("backup_validate", scheduled["name"], stdout=io.StringIO())
    page = admin_client.get(u("changelist")).content.decode()
    history = page[page.index('id="history"'):]
    assert re.search(r">Create \d+</a>.*?Celery", history, re.S)
    assert re.search(r">Validate \d+</a>.*?Cron or script", history, re.S)
    row = page[page.index(f'data-name="{scheduled["name"]}"'):]
    assert '<span class="adcp-good">valid</span>' in row[:row.index("</tr>")]  # no longer "never"
    assert "scheduled" in row[:row.index("</tr>")]


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_the_page_lists_and_restores_the_chosen_databases_backups_only(admin_client, admin_db, backup_env, seeded,
                                                                       settings):
    from adcp_backup import demo

    seeded("second", demo.DemoSize(tenants=2, products=10, agents=1, embeddings=2, dim=8))
    settings.ADCP_BACKUP_DATABASES = ["default", "second"]  # the admin manages what the app backs up
    mine = services.backup_create(database="default")
    theirs = services.backup_create(database="second")
    listed = section(admin_client.get(u("changelist")).content.decode(), "backups")
    assert mine.name in listed and theirs.name not in listed
    listed = section(admin_client.get(u("changelist"), {"database": "second"}).content.decode(), "backups")
    assert theirs.name in listed and mine.name not in listed

    plan = admin_client.get(u("restore", theirs.name), {"database": "default"}).content.decode()
    assert "(alias &#x27;second&#x27;)" in plan and "another database than default" in plan
    before = table_state("default")
    refused = admin_client.post(u("restore", theirs.name), {"database": "default", "confirm_name": theirs.name})
    assert refused.status_code == 200 and "tick this box" in refused.content.decode()
    assert not admin_jobs().filter(kind="restore").exists() and table_state("default") == before
    job = job_from(admin_client.post(u("restore", theirs.name), {"database": "default", "dry_run": "on",
                                                                  "from_other_database": "on"}))
    assert job.status == "succeeded" and job.options["from_other_database"] is True
    assert table_state("default") == before


def section(page: str, element_id: str) -> str:
    """The part of a page from the element with this id to the end of the next table."""
    start = page.index(f'id="{element_id}"')
    return page[start:page.index("</table>", start)]
