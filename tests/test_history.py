"""The job history: every origin recorded, heartbeats, stale jobs marked failed, and recording never in the way."""
from __future__ import annotations

import io
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections

from adcp_backup import history, services
from adcp_backup.exceptions import BackupNotFound
from adcp_backup.models import BackupJob

pytestmark = pytest.mark.django_db(transaction=True)


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_command_line_validation_is_recorded_with_who_where_and_the_verdict(admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    out = io.StringIO()
    call_command("backup_validate", made.name, stdout=out)
    job = BackupJob.objects.filter(kind="validate").get()
    assert (job.status, job.backup_name, job.origin) == ("succeeded", made.name, "cron")  # no terminal here
    assert job.actor.endswith(f"@{platform.node()}") and job.user is None
    assert job.result["valid"] is True and job.finished_at >= job.started_at
    assert job.duration is not None and job.runner == f"{os.getpid()}@{platform.node()}"


def test_an_invalid_verdict_is_its_own_status(admin_db, backup_env):
    made = services.backup_create(compression="none")
    path = backup_env / "backups" / "junk.jsonl"
    assert made.name != path.name
    path.write_bytes(b'{"kind": "header"}\nnot json\n')
    with pytest.raises(CommandError):
        call_command("backup_validate", "junk.jsonl", stdout=io.StringIO())
    job = BackupJob.objects.get(kind="validate", backup_name="junk.jsonl")
    assert job.status == "invalid" and job.result["problems_total"] >= 1


def test_a_scheduled_backup_is_recorded_as_celery(admin_db, backup_env):
    tasks = pytest.importorskip("adcp_backup.tasks")
    result = tasks.create_backup.run()
    job = BackupJob.objects.get(kind="create")
    assert (job.origin, job.status, job.backup_name) == ("celery", "succeeded", result["name"])
    assert job.actor.startswith("celery: ") and job.result["purpose"] == "scheduled"


def test_nested_operations_belong_to_the_outer_job(admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    services.backup_restore(file=made.name)  # takes a safety backup inside
    kinds = list(BackupJob.objects.order_by("id").values_list("kind", "origin", "status"))
    assert kinds == [("create", "api", "succeeded"), ("restore", "api", "succeeded")]
    services.backup_info()  # validations behind "newest valid" are reads, not operations
    assert BackupJob.objects.count() == 2


def test_dry_runs_and_failures_are_marked(admin_db, backup_env):
    made = services.backup_create(compression="gzip")
    services.backup_restore(file=made.name, dry_run=True)
    with pytest.raises(BackupNotFound):
        services.backup_restore(file="missing.jsonl.gz")
    dry = BackupJob.objects.get(kind="restore", dry_run=True)
    failed = BackupJob.objects.get(kind="restore", dry_run=False)
    assert dry.status == "succeeded" and dry.options == {"dry_run": True}
    assert failed.status == "failed" and "missing.jsonl.gz" in failed.error


def test_commands_run_and_exit_as_before_when_the_job_table_is_missing(admin_db, backup_env, caplog):
    with connection.schema_editor() as editor:
        editor.delete_model(BackupJob)
    try:
        out = io.StringIO()
        call_command("backup_create", "--compress", "--json", stdout=out)
        assert '"name"' in out.getvalue()
        call_command("backup_validate", "latest", stdout=io.StringIO())
        assert len(services.backup_list()) == 1
        assert "job history could not be written" in caplog.text
    finally:
        connections["default"].close()
        with connection.schema_editor() as editor:
            editor.create_model(BackupJob)


def test_a_job_whose_process_is_gone_is_marked_failed_at_once(admin_db):
    job = BackupJob.objects.create(kind="restore", status="running", origin="command",
                                   runner=f"{dead_pid()}@{platform.node()}", started_at=datetime.now(UTC))
    assert history.mark_stale_jobs() == [job.pk]
    job.refresh_from_db()
    assert job.status == "failed" and "ended without recording" in job.error and job.finished_at


def test_a_silent_job_is_marked_failed_after_the_stale_window_and_a_beating_one_is_not(admin_db, settings):
    settings.ADCP_BACKUP_JOB_STALE_AFTER = 120
    old = datetime.now(UTC) - timedelta(minutes=10)
    silent = BackupJob.objects.create(kind="create", status="running", runner="123@another-host",
                                      started_at=old, heartbeat_at=old)
    beating = BackupJob.objects.create(kind="create", status="running", runner="456@another-host",
                                       started_at=old, heartbeat_at=datetime.now(UTC) - timedelta(seconds=30))
    alive_here = BackupJob.objects.create(kind="create", status="running", origin="command",
                                          runner=f"{os.getpid()}@{platform.node()}", started_at=old,
                                          heartbeat_at=old)
    BackupJob.objects.filter(pk=silent.pk).update(created_at=old)
    assert history.mark_stale_jobs() == [silent.pk]
    silent.refresh_from_db()
    assert silent.status == "failed" and "No sign of life for 10 minutes" in silent.error
    assert BackupJob.objects.get(pk=beating.pk).status == "running"
    assert BackupJob.objects.get(pk=alive_here.pk).status == "running"


def test_the_heartbeat_reaches_the_row_while_a_job_runs(admin_db, settings):
    settings.ADCP_BACKUP_JOB_HEARTBEAT = 0.5
    job = BackupJob.objects.create(kind="create", status="running")
    with history.Heartbeat(job.pk):
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while BackupJob.objects.get(pk=job.pk).heartbeat_at is None and datetime.now(UTC) < deadline:
            import time

            time.sleep(0.2)
    assert BackupJob.objects.get(pk=job.pk).heartbeat_at is not None


def test_sqlite_databases_of_the_project_use_wal():
    with connections["default"].cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


def test_the_demo_settings_serve_static_files_with_whitenoise():
    from django.conf import settings

    assert "whitenoise.middleware.WhiteNoiseMiddleware" in settings.MIDDLEWARE
    assert Path(settings.BASE_DIR, "requirements.txt").read_text().count("whitenoise==") == 1
