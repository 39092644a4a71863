"""Celery tasks: a scheduled backup, a prune, and the admin's background jobs; each calls one service.

Only Celery imports this module (``app.autodiscover_tasks()``); the app works without Celery installed.
"""
from __future__ import annotations

import importlib
from typing import Any

from celery import shared_task
from celery.schedules import crontab, schedule

from . import history, services
from .conf import backup_settings
from .exceptions import BackupConfigurationError
from .interrupts import signals_interrupt
from .schedules import parse_schedule

CREATE = "adcp_backup.create"
PRUNE = "adcp_backup.prune"
DRILL = "adcp_backup.drill"
RUN_JOB = "adcp_backup.run_job"


@shared_task(name=CREATE)
def create_backup(*, database: str | None = None, compression: str | None = None,
                  purpose: str = "scheduled") -> dict[str, Any]:
    """Write a backup (of the default database unless ``database`` is given); ``purpose="scheduled"`` makes a
    failure e-mail the admins when that is enabled.

    SIGTERM or SIGHUP to the process running it unwinds the backup like SIGINT: nothing half-written is left."""
    with signals_interrupt(), history.origin(_celery_origin()):
        return services.backup_create(database=database or backup_settings.default_database,
                                      compression=compression, purpose=purpose).as_dict()


@shared_task(name=PRUNE)
def prune_backups(*, dry_run: bool = False, database: str | None = None) -> dict[str, Any]:
    """Apply the retention settings (ADCP_BACKUP_KEEP_*) to one database's backups in storage."""
    with signals_interrupt(), history.origin(_celery_origin()):
        return services.backup_prune(dry_run=dry_run,
                                     database=database or backup_settings.default_database).as_dict()


def _celery_origin() -> history.Origin:
    return history.Origin("celery", history.process_actor("celery: "))


@shared_task(name=DRILL)
def drill_backup(*, file: str = "latest", database: str | None = None) -> dict[str, Any]:
    """Restore drill of a backup (the database's newest by default) into a scratch database; the verdict is
    recorded and a failure sends ``drill_failed`` (which e-mails the admins when that is enabled)."""
    with signals_interrupt():
        return services.backup_drill(file=file, database=database or backup_settings.default_database).as_dict()


@shared_task(name=RUN_JOB)
def run_job(job_id: int) -> Any:
    """Run one job the admin queued (adcp_backup.jobs records its progress and result)."""
    try:
        jobs = importlib.import_module("adcp_backup.jobs")
    except ModuleNotFoundError as exc:
        if exc.name != "adcp_backup.jobs":
            raise
        raise BackupConfigurationError(
            "The task adcp_backup.run_job needs adcp_backup.jobs, which this installation does not have."
        ) from exc
    return jobs.run_job(job_id)


def celery_schedule(text: str | None, *, setting: str) -> crontab | schedule | None:
    """A Celery schedule for one ADCP_BACKUP_*SCHEDULE setting, or None when it is empty."""
    parsed = parse_schedule(text, setting=setting)
    if parsed is None:
        return None
    if parsed.every is not None:
        return schedule(run_every=parsed.every)
    try:
        return crontab(minute=parsed.minute, hour=parsed.hour, day_of_month=parsed.day_of_month,
                       month_of_year=parsed.month_of_year, day_of_week=parsed.day_of_week)
    except ValueError as exc:
        raise BackupConfigurationError(f"{setting} {parsed.text!r} is not a schedule Celery accepts: {exc}") from exc


def beat_schedule() -> dict[str, dict[str, Any]]:
    """The beat entries the settings ask for, in the form of Celery's ``beat_schedule`` setting: a backup, a
    prune and a restore drill of each database in ADCP_BACKUP_DATABASES, each left out when its schedule
    setting is empty.

    The default database's entries are named ``adcp-backup-create``, ``adcp-backup-prune`` and
    ``adcp-backup-drill``; the others' end in ``-<alias>``. A project adds them to its own Celery app
    (docs/install.md)."""
    entries: dict[str, dict[str, Any]] = {}
    for position, alias in enumerate(backup_settings.DATABASES):
        suffix = "" if position == 0 else f"-{alias}"
        for key, task, setting in (("adcp-backup-create", CREATE, "SCHEDULE"),
                                   ("adcp-backup-prune", PRUNE, "PRUNE_SCHEDULE"),
                                   ("adcp-backup-drill", DRILL, "DRILL_SCHEDULE")):
            when = celery_schedule(getattr(backup_settings, setting), setting=f"ADCP_BACKUP_{setting}")
            if when is not None:
                entries[key + suffix] = {"task": task, "schedule": when, "kwargs": {"database": alias}}
    return entries
