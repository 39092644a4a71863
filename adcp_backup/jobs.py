"""Admin jobs: a BackupJob record per action, run off the request in a thread or a Celery worker."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connections, transaction
from django.db.models import QuerySet

from . import history, services
from .conf import backup_settings
from .exceptions import BackupConfigurationError, BackupError, BackupLocked, InvalidBackup, SettingsFilesNotWritten
from .interrupts import describe, signals_interrupt
from .models import BackupJob
from .progress import ProgressEvent
from .storage import BackupStorage

logger = logging.getLogger(__name__)

CELERY_TASK_NAME = "adcp_backup.run_job"
ACTIVE = history.ACTIVE
CACHE_TIMEOUT = 6 * 3600
CACHE_INTERVAL = 0.5

# Live progress of jobs run by this process. A restore holds one transaction on the job's connection, so
# progress written to the BackupJob row would stay invisible until the end: it lives here and in the cache,
# and only the final state is written to the row, once the service has returned or failed.
_progress: dict[int, dict[str, Any]] = {}
_progress_lock = threading.Lock()
_threads: dict[int, threading.Thread] = {}


@dataclass(frozen=True)
class JobProgress:
    job_id: int
    status: str
    phase: str | None
    table: str | None
    done: int
    total: int | None
    message: str | None

    @property
    def percent(self) -> int | None:
        if not self.total:
            return None
        return min(100, int(100 * self.done / self.total))

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.job_id, "status": self.status, "phase": self.phase, "table": self.table,
                "done": self.done, "total": self.total, "percent": self.percent, "message": self.message,
                "finished": self.status not in ACTIVE}


def _cache_key(job_id: int) -> str:
    return f"adcp_backup:job:{job_id}:progress"


_shared_cache_usable = history._shared_cache_usable


class JobProgressRecorder:
    """The progress callback of a job: in memory at once, in the shared cache at most twice a second."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self._last_cached = 0.0
        self.state: dict[str, Any] = {"phase": None, "table": None, "done": 0, "total": None, "message": None}

    def __call__(self, event: ProgressEvent) -> None:
        if event.message:
            self.state = {**self.state, "phase": event.phase, "message": event.message}
        else:
            self.state = {"phase": event.phase, "table": event.table, "done": event.done, "total": event.total,
                          "message": self.state.get("message")}
        with _progress_lock:
            _progress[self.job_id] = self.state
        now = time.monotonic()
        if _shared_cache_usable() and (event.finished or event.message or now - self._last_cached >= CACHE_INTERVAL):
            self._last_cached = now
            cache.set(_cache_key(self.job_id), self.state, CACHE_TIMEOUT)

    def clear(self) -> None:
        with _progress_lock:
            _progress.pop(self.job_id, None)
        if _shared_cache_usable():
            cache.delete(_cache_key(self.job_id))


def progress_of(job: BackupJob) -> JobProgress:
    """Live progress of a running job (this process, then the shared cache), else what the row recorded."""
    state: dict[str, Any] | None = None
    if job.status in ACTIVE:
        with _progress_lock:
            state = _progress.get(job.pk)
        if state is None and _shared_cache_usable():
            state = cache.get(_cache_key(job.pk))
    if state is None:
        state = {"phase": job.kind, "table": job.progress_table or None, "done": job.progress_done,
                 "total": job.progress_total, "message": None}
    return JobProgress(job_id=job.pk, status=job.status, phase=state.get("phase"), table=state.get("table"),
                       done=int(state.get("done") or 0), total=state.get("total"), message=state.get("message"))


# -- starting --------------------------------------------------------------------------------------------
def active_jobs(kind: str) -> QuerySet[BackupJob]:
    """Jobs of ``kind`` still pending or running, once the jobs whose runner is gone have been marked failed."""
    history.mark_stale_jobs()
    return BackupJob.objects.filter(kind=kind, status__in=ACTIVE).order_by("created_at")


def restore_running() -> BackupJob | None:
    return active_jobs(BackupJob.Kind.RESTORE).first()


def start_job(*, kind: str, backup_name: str = "", options: dict[str, Any] | None = None, user: Any = None,
              remote_addr: str | None = None, database: str = "default", origin: str = "admin",
              recorded: Callable[[BackupJob], None] | None = None) -> BackupJob:
    """Record a job and hand it to a runner; refuses a second restore and any backup during a restore.

    ``recorded(job)`` runs in the transaction that records the job, before any runner can start it (the
    admin writes its log entry there: once a restore runs, SQLite takes no other writes)."""
    try:
        with transaction.atomic(using=BackupJob.objects.db):
            running = restore_running()
            if running is not None and kind in (BackupJob.Kind.RESTORE, BackupJob.Kind.CREATE):
                raise BackupLocked(
                    f"A restore of {running.backup_name} (job {running.pk}) is running; "
                    "wait for it to finish before starting a backup or another restore."
                )
            if kind == BackupJob.Kind.RESTORE:
                busy = active_jobs(BackupJob.Kind.CREATE).first()
                if busy is not None:
                    raise BackupLocked(f"A backup (job {busy.pk}) is running; restore once it has finished.")
            job = BackupJob.objects.create(
                kind=kind, backup_name=backup_name, options=options or {}, database=database, origin=origin,
                user=user if getattr(user, "is_authenticated", False) else None, remote_addr=remote_addr or None,
                dry_run=bool((options or {}).get("dry_run")),
            )
            if recorded is not None:
                recorded(job)
            transaction.on_commit(lambda: _dispatch(job.pk), using=BackupJob.objects.db)
    except DatabaseError as exc:  # two submissions at once on a busy database: one of them waits its turn
        logger.warning("A job could not be recorded: %s", exc)
        raise BackupLocked("The job could not be recorded: another one was being started at the same moment, or "
                           "a restore is writing to the database. Look at the running jobs, then try again.") from exc
    return job


def thread_alive(job_id: int) -> bool:
    thread = _threads.get(job_id)
    return thread is not None and thread.is_alive()


def runner() -> str:
    choice = backup_settings.JOB_RUNNER
    if choice == "auto":
        if not getattr(settings, "CELERY_BROKER_URL", ""):
            return "thread"
        try:
            import celery  # noqa: F401
        except ImportError:
            return "thread"
        return "celery"
    return choice


def _dispatch(job_id: int) -> None:
    try:
        how = runner()
    except BackupConfigurationError as exc:
        _fail(job_id, str(exc))
        raise
    if how == "celery":
        try:
            from celery import current_app
        except ImportError as exc:  # pragma: no cover - configuration error
            _fail(job_id, "Celery is not installed (pip install 'adcp-backup[celery]').")
            raise BackupConfigurationError("Celery is not installed (pip install 'adcp-backup[celery]').") from exc
        try:
            current_app.send_task(CELERY_TASK_NAME, args=[job_id])
        except Exception as exc:  # the broker's own errors vary by transport
            _fail(job_id, f"The job could not be queued: {exc}")
            raise BackupError(f"The job could not be queued on the Celery broker: {exc}") from exc
        return
    thread = threading.Thread(target=_thread_main, args=(job_id,), name=f"adcp-backup-job-{job_id}", daemon=True)
    _threads[job_id] = thread
    thread.start()


def _thread_main(job_id: int) -> None:
    try:
        run_job(job_id)
    finally:
        connections.close_all()  # this thread's connections only
        _threads.pop(job_id, None)


def wait(job_id: int, timeout: float | None = None) -> None:
    """Wait for a job run in a thread of this process (for tests and for shutting down cleanly)."""
    thread = _threads.get(job_id)
    if thread is not None:
        thread.join(timeout)


def _fail(job_id: int, error: str) -> None:
    BackupJob.objects.filter(pk=job_id).update(status=BackupJob.Status.FAILED, error=error,
                                               finished_at=datetime.now(UTC))


# -- running ---------------------------------------------------------------------------------------------
class JobFailed(BackupError):
    """A job that ran to the end with a negative outcome, keeping what it found for the job page."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


def run_job(job_id: int) -> None:
    """Carry out a recorded job once; the Celery task and the thread runner both call this."""
    claimed = BackupJob.objects.filter(pk=job_id, status=BackupJob.Status.PENDING).update(
        status=BackupJob.Status.RUNNING, started_at=datetime.now(UTC), runner=history.runner_id(),
        heartbeat_at=datetime.now(UTC))
    if not claimed:
        logger.warning("Job %s is not pending; not run again.", job_id)
        return
    job = BackupJob.objects.get(pk=job_id)
    recorder = JobProgressRecorder(job_id)
    status: str = BackupJob.Status.FAILED
    result: dict[str, Any] | None = None
    error = ""
    try:
        with signals_interrupt(), history.as_job(job_id), history.Heartbeat(job_id):
            status, result = _RUNNERS[job.kind](job, recorder)
        if status == BackupJob.Status.INVALID:
            lead = ("The uploaded file is not a valid backup and was not kept" if job.kind == BackupJob.Kind.UPLOAD
                    else "The file is not a valid backup")
            error = invalid_summary(result, lead=lead)
    except InvalidBackup as exc:
        status, error = BackupJob.Status.INVALID, str(exc)
        result = {"problems": [p.as_dict() for p in exc.problems], "problems_total": exc.total}
    except JobFailed as exc:
        error, result = str(exc), exc.result
    except SettingsFilesNotWritten as exc:  # the database WAS restored: the record says so, and what was not
        error = str(exc)
        result = {"database_restored": True, "restored": exc.restored, "files": exc.files,
                  "files_not_written": exc.failed}
    except BackupError as exc:
        error = str(exc)
    except Exception as exc:
        logger.exception("Job %s (%s) failed unexpectedly", job_id, job.kind)
        error = f"Unexpected error: {type(exc).__name__}: {exc}"
    except BaseException as exc:  # SIGTERM, SIGHUP, SIGINT, worker shutdown: record the failure, then stop
        error = f"{describe(exc) if isinstance(exc, KeyboardInterrupt) else type(exc).__name__}: the job stopped " \
                "before it finished; nothing half-written was kept."
        raise
    finally:
        state = recorder.state
        # Only a job still running is finished here: one marked failed meanwhile keeps that verdict's reason.
        BackupJob.objects.filter(pk=job_id, status=BackupJob.Status.RUNNING).update(
            status=status, result=result, error=error, finished_at=datetime.now(UTC),
            progress_table=(state.get("table") or "")[:100], progress_done=int(state.get("done") or 0),
            progress_total=state.get("total"),
        )
        recorder.clear()
    logger.info("Job %s (%s %s): %s%s", job_id, job.kind, job.backup_name, status, f": {error}" if error else "")


def invalid_summary(result: dict[str, Any] | None, *, lead: str = "The file is not a valid backup") -> str:
    result = result or {}
    problems = result.get("problems") or []
    total = int(result.get("problems_total") or len(problems))
    if not problems:
        return f"{lead}."
    first = problems[0]
    where = str(first.get("section")) + (f", row {first['row']}" if first.get("row") is not None else "")
    text = f"{lead}: {first.get('message', 'unknown problem')} ({where})"
    return text + (f", and {total - 1} more problem{'s' if total > 2 else ''}." if total > 1 else ".")


Outcome = tuple[str, dict[str, Any]]


def _run_create(job: BackupJob, progress: JobProgressRecorder) -> Outcome:
    result = services.backup_create(database=job.database, compression=job.options.get("compression"),
                                    encrypt=job.options.get("encrypt"), progress=progress)
    BackupJob.objects.filter(pk=job.pk).update(backup_name=result.name)
    return BackupJob.Status.SUCCEEDED, result.as_dict()


def _run_validate(job: BackupJob, progress: JobProgressRecorder) -> Outcome:
    name = BackupStorage().require(job.backup_name)
    report = services.backup_validate(file=name, progress=progress)
    return (BackupJob.Status.SUCCEEDED if report.valid else BackupJob.Status.INVALID), report.as_dict()


def _run_restore(job: BackupJob, progress: JobProgressRecorder) -> Outcome:
    name = BackupStorage().require(job.backup_name)
    options = restore_options(job.options)
    if not options["dry_run"] and job.options.get("validate_first"):
        # A file not yet known to be valid is validated first: only one that passes reaches the safety backup.
        progress(ProgressEvent("validate", message="Validating the file before anything is written..."))
        report = services.backup_validate(file=name, progress=progress)
        if not report.valid:
            return BackupJob.Status.INVALID, {**report.as_dict(), "refused": True}
    result = services.backup_restore(file=name, database=job.database, progress=progress, **options)
    return BackupJob.Status.SUCCEEDED, result.as_dict()


def restore_options(options: dict[str, Any]) -> dict[str, Any]:
    """The keywords of services.backup_restore an admin restore job carries in its options."""
    restore: dict[str, Any] = {"dry_run": bool(options.get("dry_run", True))}
    if options.get("tenants"):
        restore["tenants"] = list(options["tenants"])
    if options.get("from_other_database"):
        restore["from_other_database"] = True
    if options.get("allow_unsigned"):  # the admin sets it only for holders of restore_unsigned_backups
        restore["allow_unsigned"] = True
    return restore


def _run_upload(job: BackupJob, progress: JobProgressRecorder) -> Outcome:
    report = services.backup_accept_upload(quarantined=job.options["quarantine"], name=job.backup_name,
                                           database=job.database, progress=progress)
    data = {**report.as_dict(), "original_name": job.options.get("original_name")}
    return (BackupJob.Status.SUCCEEDED if report.valid else BackupJob.Status.INVALID), data


def record_download(*, name: str, user: Any, remote_addr: str | None, database: str = "default") -> None:
    """A download is served by the web server, not a service: it is recorded here, as it starts."""
    job = history.begin(kind=BackupJob.Kind.DOWNLOAD, backup_name=name, database=database,
                        where=history.Origin(BackupJob.Origin.ADMIN, user=user, remote_addr=remote_addr))
    history.end(job, status=BackupJob.Status.SUCCEEDED)


def _run_drill(job: BackupJob, progress: JobProgressRecorder) -> Outcome:
    """A backup that does not restore fails the job, keeping the drill's report."""
    name = BackupStorage().require(job.backup_name)
    result = services.backup_drill(file=name, database=job.database, progress=progress)
    data = result.as_dict()
    if not result.restorable:
        first = result.problems[0] if result.problems else "unknown problem"
        raise JobFailed(f"{result.name} does not restore: {first}", data)
    return BackupJob.Status.SUCCEEDED, data


_RUNNERS: dict[str, Callable[[BackupJob, JobProgressRecorder], Outcome]] = {
    BackupJob.Kind.CREATE: _run_create,
    BackupJob.Kind.VALIDATE: _run_validate,
    BackupJob.Kind.RESTORE: _run_restore,
    BackupJob.Kind.UPLOAD: _run_upload,
    BackupJob.Kind.DRILL: _run_drill,
}
