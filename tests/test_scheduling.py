"""Scheduling and monitoring: a real Celery worker and beat on Redis, failure signals and e-mail, --max-age."""
from __future__ import annotations

import email
import email.policy
import json
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from adcp_backup import monitoring, services, signals
from adcp_backup.exceptions import BackupConfigurationError, BackupError

from .scheduling_fixtures import PYTHON, manage, project_env, wait_for, write_backup

celery = pytest.importorskip("celery")
redis = pytest.importorskip("redis")

def backup_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("adcp-backup-*")) if folder.exists() else []


# -- a real worker and beat --------------------------------------------------------------------------------
@pytest.mark.slow
def test_beat_schedules_backups_and_prunes_that_a_worker_runs(tmp_path, broker, celery_processes):
    env = project_env(tmp_path, CELERY_BROKER_URL=broker, ADCP_BACKUP_SCHEDULE="@every 2s",
                      ADCP_BACKUP_PRUNE_SCHEDULE="@every 5s", ADCP_BACKUP_KEEP_LAST="2", ADCP_BACKUP_KEEP_DAILY="0",
                      ADCP_BACKUP_KEEP_WEEKLY="0", ADCP_BACKUP_KEEP_MONTHLY="0")
    seeded = manage("adcp_demo", "--products", "200", "--embeddings", "10", "--dim", "8", env=env, cwd=tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    processes = celery_processes(env)
    logs = [processes.worker(), processes.beat()]
    backups = tmp_path / "backups"

    first = wait_for(lambda: backup_files(backups), 90, "a scheduled backup in the storage", logs)[0]
    listed = manage("backup_list", "--json", env=env, cwd=tmp_path)
    entry = next(b for b in json.loads(listed.stdout)["backups"] if b["name"] == first.name)
    assert entry["purpose"] == "scheduled"
    assert entry["counts"] == {"tenant": 6, "product": 200, "externalagent": 1, "product_embeddings": 10}
    valid = manage("backup_validate", first.name, "--json", env=env, cwd=tmp_path)
    assert valid.returncode == 0 and json.loads(valid.stdout)["valid"] is True

    def pruned_the_first() -> bool:
        return "adcp_backup.prune[" in logs[0].read_text(errors="replace") and not first.exists()

    wait_for(pruned_the_first, 90, "a scheduled prune removing the oldest backups", logs)
    processes.stop()
    created = re.findall(r"adcp_backup\.create\[[^\]]+\] succeeded", logs[0].read_text(errors="replace"))
    remaining = backup_files(backups)
    assert 2 <= len(remaining) < len(created)  # ADCP_BACKUP_KEEP_LAST=2, plus any written since the last prune
    assert "Sending due task adcp-backup-create (adcp_backup.create)" in logs[1].read_text()
    assert "Sending due task adcp-backup-prune (adcp_backup.prune)" in logs[1].read_text()


@pytest.mark.slow
def test_a_failing_scheduled_backup_mails_the_admins_from_the_worker(tmp_path, broker, celery_processes):
    outbox = tmp_path / "mail"
    env = project_env(tmp_path, CELERY_BROKER_URL=broker, ADCP_BACKUP_SCHEDULE="", ADCP_BACKUP_PRUNE_SCHEDULE="",
                      ADCP_BACKUP_NOTIFY_ADMINS="true", DJANGO_ADMINS="ops@example.com",
                      EMAIL_URL=f"filemail:///{outbox}")  # the database has no AdCP tables: the backup fails
    processes = celery_processes(env)
    logs = [processes.worker()]
    client = celery.Celery(broker=broker)
    client.send_task("adcp_backup.create", kwargs={})
    client.close()
    messages = wait_for(lambda: sorted(outbox.glob("*")) if outbox.exists() else [], 90, "the e-mail", logs)
    message = email.message_from_string(messages[0].read_text().split("\n" + "-" * 79)[0], policy=email.policy.default)
    assert message["Subject"].startswith("[Django] Scheduled backup failed: The database 'default' lacks the tables")
    assert message["To"] == "ops@example.com"
    assert "python manage.py backup_info" in message.get_content()
    assert backup_files(tmp_path / "backups") == []
    assert "adcp_backup.create[" in logs[0].read_text() and "raised unexpected: BackupError" in logs[0].read_text()


# -- the tasks in this process ---------------------------------------------------------------------------
@pytest.fixture
def failure_receiver() -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    signals.backup_failed.connect(receiver)
    yield received
    signals.backup_failed.disconnect(receiver)


@pytest.mark.django_db
def test_failing_scheduled_task_sends_backup_failed_and_mails_admins(backup_env, settings, failure_receiver):
    from adcp_backup import tasks

    settings.ADCP_BACKUP_NOTIFY_ADMINS = True
    settings.ADMINS = [("Ops", "ops@example.com")]
    outcome = tasks.create_backup.apply()
    assert outcome.failed() and isinstance(outcome.result, BackupError)
    assert len(failure_receiver) == 1
    assert failure_receiver[0]["arguments"]["purpose"] == "scheduled"
    assert failure_receiver[0]["exception"] is outcome.result
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com"]
    assert mail.outbox[0].subject.startswith("[Django] Scheduled backup failed: The database 'default' lacks")
    assert not (backup_env / "backups").exists() or backup_files(backup_env / "backups") == []


@pytest.mark.django_db
def test_no_mail_for_a_manual_failure_or_when_notifications_are_off(backup_env, settings, failure_receiver):
    from adcp_backup import tasks

    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.ADCP_BACKUP_NOTIFY_ADMINS = True
    with pytest.raises(BackupError):
        services.backup_create()
    settings.ADCP_BACKUP_NOTIFY_ADMINS = False
    assert tasks.create_backup.apply().failed()
    assert len(failure_receiver) == 2
    assert mail.outbox == []


def test_successful_task_returns_the_result_and_sends_backup_created(seeded):
    from adcp_backup import tasks

    seeded()
    received: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs["result"])

    signals.backup_created.connect(receiver)
    try:
        outcome = tasks.create_backup.apply()
    finally:
        signals.backup_created.disconnect(receiver)
    assert outcome.successful(), outcome.traceback
    assert outcome.result == received[0].as_dict()
    assert received[0].purpose == "scheduled"
    assert [e.name for e in services.backup_list()] == [received[0].name]


def test_restore_sends_restore_finished_and_restore_failed(seeded):
    seeded()
    backup = services.backup_create()
    events: list[tuple[str, Any]] = []

    def finished(sender: Any, **kwargs: Any) -> None:
        events.append(("finished", kwargs["result"]))

    def failed(sender: Any, **kwargs: Any) -> None:
        events.append(("failed", kwargs["exception"]))

    signals.restore_finished.connect(finished)
    signals.restore_failed.connect(failed)
    try:
        result = services.backup_restore(file=backup.name, safety_backup=False)
        with pytest.raises(BackupError):
            services.backup_restore(file="no-such-backup.jsonl")
    finally:
        signals.restore_finished.disconnect(finished)
        signals.restore_failed.disconnect(failed)
    assert events[0] == ("finished", result)
    assert events[1][0] == "failed" and "no-such-backup" in str(events[1][1])


def test_a_broken_receiver_never_turns_a_backup_into_a_failure(seeded):
    seeded()

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.backup_created.connect(broken)
    try:
        result = services.backup_create()
    finally:
        signals.backup_created.disconnect(broken)
    assert [e.name for e in services.backup_list()] == [result.name]


@pytest.mark.slow
def test_an_admin_job_queued_on_celery_is_run_by_a_real_worker(tmp_path, broker, celery_processes):
    env = project_env(tmp_path, CELERY_BROKER_URL=broker, ADCP_BACKUP_SCHEDULE="", ADCP_BACKUP_PRUNE_SCHEDULE="",
                      ADCP_BACKUP_JOB_RUNNER="celery")
    for command in (["migrate", "-v0"], ["adcp_demo", "--products", "40", "--embeddings", "4", "--dim", "8"]):
        done = manage(*command, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    processes = celery_processes(env)
    logs = [processes.worker()]
    queued = manage("shell", "-c", "from adcp_backup import jobs; "
                    "print(jobs.start_job(kind='create', options={'compression': 'zstd'}, origin='api').pk)",
                    env=env, cwd=tmp_path)
    assert queued.returncode == 0, queued.stderr
    job_id = int(queued.stdout.split()[-1])

    def finished() -> tuple[str, str, str] | None:
        with sqlite3.connect(tmp_path / "adcp.sqlite3") as db:
            row = db.execute("SELECT status, backup_name, error FROM adcp_backup_backupjob WHERE id = ?",
                             (job_id,)).fetchone()
        return row if row and row[0] in ("succeeded", "failed") else None

    status, name, error = wait_for(finished, 90, "the job to finish", logs)
    assert status == "succeeded", error
    assert name.endswith(".jsonl.zst") and (tmp_path / "backups" / name).is_file()
    assert "adcp_backup.run_job[" in logs[0].read_text()


# -- schedules from settings -----------------------------------------------------------------------------
def test_beat_schedule_is_built_from_the_settings(settings):
    from celery.schedules import crontab, schedule

    from adcp_backup import tasks

    settings.ADCP_BACKUP_SCHEDULE = "15 4 * * 1-5"
    settings.ADCP_BACKUP_PRUNE_SCHEDULE = "@every 6h"
    entries = tasks.beat_schedule()
    assert entries["adcp-backup-create"]["task"] == "adcp_backup.create"
    assert entries["adcp-backup-create"]["schedule"] == crontab(minute="15", hour="4", day_of_week="1-5")
    assert entries["adcp-backup-prune"]["schedule"] == schedule(run_every=timedelta(hours=6))
    settings.ADCP_BACKUP_SCHEDULE = "@daily"
    settings.ADCP_BACKUP_PRUNE_SCHEDULE = ""
    entries = tasks.beat_schedule()
    assert entries["adcp-backup-create"]["schedule"] == crontab(minute="0", hour="0")
    assert "adcp-backup-prune" not in entries
    settings.ADCP_BACKUP_SCHEDULE = "2am daily"
    with pytest.raises(BackupConfigurationError, match="ADCP_BACKUP_SCHEDULE '2am daily' is not a schedule"):
        tasks.beat_schedule()


def test_the_app_imports_and_runs_without_celery(tmp_path):
    env = project_env(tmp_path)
    code = ("import sys; sys.modules['celery'] = None\n"
            "import django; django.setup()\n"
            "import project; assert project.celery_app is None\n"
            "from adcp_backup import services, locking, retention, signals, notifications, monitoring\n"
            "from django.core.management import call_command; call_command('backup_info', '--json')\n"
            "assert 'adcp_backup.tasks' not in sys.modules\n")
    done = subprocess.run([PYTHON, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["settings"]["schedule"]["backup"] == {"setting": None,
                                                                         "description": monitoring.NOT_SCHEDULED}


# -- monitoring: backup_info -----------------------------------------------------------------------------
def test_max_age_exits_1_when_the_newest_backup_is_older(seeded, backup_env):
    seeded()
    now = datetime.now(UTC)
    write_backup(backup_env / "backups", now - timedelta(hours=30))
    write_backup(backup_env / "backups", now - timedelta(hours=1), purpose="safety")  # does not count
    write_backup(backup_env / "backups", now - timedelta(hours=2), truncated=True)  # newer, but not valid
    with pytest.raises(CommandError) as stale:
        call_command("backup_info", "--max-age", "26h", stdout=StringIO())
    assert stale.value.returncode == 1
    assert "older than 26h" in str(stale.value)
    call_command("backup_info", "--max-age", "31h", stdout=StringIO())
    write_backup(backup_env / "backups", now - timedelta(hours=3))
    call_command("backup_info", "--max-age", "26h", stdout=StringIO())


def test_max_age_with_no_backup_at_all_exits_1(seeded):
    seeded()
    with pytest.raises(CommandError) as stale:
        call_command("backup_info", "--max-age", "26h", "--json", stdout=StringIO())
    assert stale.value.returncode == 1 and "no backup" in str(stale.value)


def test_info_shows_schedule_retention_encryption_and_never_secrets(seeded, backup_env, settings):
    seeded()
    settings.ADCP_BACKUP_SCHEDULE = "0 3 * * *"
    settings.ADCP_BACKUP_SCHEDULED_BY = "celery"
    settings.ADCP_BACKUP_KEEP_DAILY = 9
    settings.ADCP_BACKUP_NOTIFY_ADMINS = True
    settings.CELERY_BROKER_URL = "redis://:broker-password@127.0.0.1:6379/4"
    result = services.backup_create()
    out = StringIO()
    call_command("backup_info", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["backups"]["count"] == 1 and data["backups"]["total_size"] == result.size
    assert data["newest"]["name"] == result.name and data["newest"]["age_seconds"] < 60
    assert data["database"]["tables"] == {"tenant": 4, "product": 60, "externalagent": 2, "product_embeddings": 12}
    assert data["storage"]["free_bytes"] > 0
    assert data["settings"]["schedule"]["backup"] == {"setting": "0 3 * * *",
                                                      "description": "Celery beat, cron '0 3 * * *'"}
    assert data["settings"]["schedule"]["celery_broker"] is True and data["settings"]["schedule"]["notify_admins"]
    assert data["settings"]["retention"]["keep_daily"] == 9
    assert data["settings"]["encryption"]["encrypted_backups"] == 0
    assert data["settings"]["lock"]["held_by"] is None
    assert "broker-password" not in out.getvalue() and "AIza-test-secret-value" not in out.getvalue()
    text = StringIO()
    call_command("backup_info", stdout=text)
    for line in ("Schedule (backup): Celery beat, cron '0 3 * * *'", "Retention: last 7, daily 9",
                 "Celery broker: configured", "Running now: nothing"):
        assert line in text.getvalue()
    assert "broker-password" not in text.getvalue()


def test_info_shows_a_schedule_only_when_something_runs_it(seeded, settings):
    seeded()
    settings.ADCP_BACKUP_SCHEDULE = "0 3 * * *"
    settings.ADCP_BACKUP_SCHEDULED_BY = ""
    text = StringIO()
    call_command("backup_info", stdout=text)
    assert "Schedule (backup): never: nothing is set to start it" in text.getvalue()
    assert "0 3 * * *" not in text.getvalue()
    settings.ADCP_BACKUP_SCHEDULED_BY = "cron"
    text = StringIO()
    call_command("backup_info", stdout=text)
    assert "Schedule (backup): started by cron" in text.getvalue() and "0 3 * * *" not in text.getvalue()


def test_beat_schedule_has_a_backup_a_prune_and_a_drill_for_each_database(settings):
    from adcp_backup import tasks

    settings.ADCP_BACKUP_DATABASES = ["adcp", "reporting"]
    settings.ADCP_BACKUP_DRILL_SCHEDULE = "@weekly"
    entries = tasks.beat_schedule()
    assert sorted(entries) == ["adcp-backup-create", "adcp-backup-create-reporting", "adcp-backup-drill",
                               "adcp-backup-drill-reporting", "adcp-backup-prune", "adcp-backup-prune-reporting"]
    assert entries["adcp-backup-drill-reporting"]["kwargs"] == {"database": "reporting"}
    assert entries["adcp-backup-create"]["kwargs"] == {"database": "adcp"}
    assert entries["adcp-backup-prune-reporting"] == {**entries["adcp-backup-prune"],
                                                      "kwargs": {"database": "reporting"}}
