"""The job history: one BackupJob row per create, validate, restore, prune, delete, download or upload,
whoever started it (the admin, a command, cron, Celery), with a heartbeat while it runs.

Recording never changes an operation's outcome: when the job table is missing or the database refuses the
write, the operation runs unrecorded and a warning is logged. Nested calls (the safety backup of a restore,
the validations of a prune) belong to the outer job and are not recorded again.
"""
from __future__ import annotations

import contextvars
import functools
import getpass
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.core.cache import cache
from django.core.cache.backends.db import DatabaseCache
from django.db import DatabaseError, transaction

from .conf import backup_settings
from .db import without_waiting
from .models import BackupJob

logger = logging.getLogger(__name__)

ACTIVE = (BackupJob.Status.PENDING, BackupJob.Status.RUNNING)
CACHE_TIMEOUT = 6 * 3600

F = TypeVar("F", bound=Callable[..., Any])
V = TypeVar("V")


@dataclass(frozen=True)
class Origin:
    """Where the operations of this context come from, and who started them."""

    origin: str
    actor: str = ""
    user: Any = None
    remote_addr: str | None = None


_origin: contextvars.ContextVar[Origin | None] = contextvars.ContextVar("adcp_backup_origin", default=None)
_current: contextvars.ContextVar[int | None] = contextvars.ContextVar("adcp_backup_job", default=None)
_quiet: contextvars.ContextVar[bool] = contextvars.ContextVar("adcp_backup_quiet", default=False)
_last: contextvars.ContextVar[int | None] = contextvars.ContextVar("adcp_backup_last_job", default=None)


def last_recorded() -> int | None:
    """The id of the job this context recorded last (for the admin's own log entry)."""
    return _last.get()


def process_actor(prefix: str = "") -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return f"{prefix}{user}@{platform.node()}"[:255]


def runner_id() -> str:
    return f"{os.getpid()}@{platform.node()}"[:255]


@contextmanager
def _bound(variable: contextvars.ContextVar[V], value: V) -> Iterator[None]:
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def origin(value: Origin) -> AbstractContextManager[None]:
    """Mark the operations run inside as started from ``value`` (a command, a Celery task...)."""
    return _bound(_origin, value)


def quiet() -> AbstractContextManager[None]:
    """Operations run inside are not recorded (the reads behind a listing or a monitoring check)."""
    return _bound(_quiet, True)


def as_job(job_id: int) -> AbstractContextManager[None]:
    """The services called inside carry out the recorded job ``job_id``: they do not record themselves."""
    return _bound(_current, job_id)


def current_job() -> int | None:
    return _current.get()


# -- heartbeat ---------------------------------------------------------------------------------------------
def _shared_cache_usable() -> bool:
    # A database cache would write through the job's own connection, inside a restore's transaction.
    return not isinstance(cache, DatabaseCache)


def heartbeat_key(job_id: int) -> str:
    return f"adcp_backup:job:{job_id}:heartbeat"


class Heartbeat:
    """A thread that says every ADCP_BACKUP_JOB_HEARTBEAT seconds that the job is alive: in the cache, and on
    the job's row through the thread's own connection (which may have to wait while SQLite is write-locked:
    then the cache and the process check carry the news)."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.interval = max(0.5, backup_settings.JOB_HEARTBEAT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"adcp-backup-heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.beat_cache()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()  # not joined: the job's end never waits for a beat stuck behind a writer
        if _shared_cache_usable():
            cache.delete(heartbeat_key(self.job_id))

    def beat_cache(self) -> None:
        if _shared_cache_usable():
            cache.set(heartbeat_key(self.job_id), time.time(), CACHE_TIMEOUT)

    def _run(self) -> None:
        from django.db import connections

        try:
            while not self._stop.wait(self.interval):
                self.beat_cache()
                try:
                    with without_waiting(BackupJob.objects.db):
                        BackupJob.objects.filter(pk=self.job_id, status__in=ACTIVE).update(
                            heartbeat_at=datetime.now(UTC))
                except Exception:  # noqa: BLE001
                    pass  # write-locked for now; the cache has the beat
        finally:
            connections.close_all()  # this thread's connections only


def last_sign_of_life(job: BackupJob) -> datetime | None:
    moments = [m for m in (job.heartbeat_at, job.started_at, job.created_at) if m is not None]
    if _shared_cache_usable():
        beat = cache.get(heartbeat_key(job.pk))
        if isinstance(beat, (int, float)):
            moments.append(datetime.fromtimestamp(beat, UTC))
    return max(moments) if moments else None


def _process_state(job: BackupJob) -> str:
    """"gone" or "alive" when the job's process ran on this machine (or in this process), else "unknown"."""
    pid_text, _, host = (job.runner or "").partition("@")
    if host != platform.node() or not pid_text.isdigit():
        return "unknown"
    pid = int(pid_text)
    if pid == os.getpid():
        if job.origin != BackupJob.Origin.ADMIN:
            return "alive"  # recorded in this very process, which records every end before it returns
        from . import jobs  # the thread runner of this process

        return "alive" if jobs.thread_alive(job.pk) else "gone"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        return "alive"
    return "alive"


def stale_reason(job: BackupJob, now: datetime | None = None) -> str | None:
    """Why an unfinished job is dead, or None while it may still be alive."""
    if job.status not in ACTIVE:
        return None
    now = now or datetime.now(UTC)
    state = _process_state(job) if job.status == BackupJob.Status.RUNNING else "unknown"
    if state == "gone":
        return f"Its process ({job.runner}) ended without recording how the job finished (server restarted?)."
    if state == "alive":
        return None
    last = last_sign_of_life(job)
    window = timedelta(seconds=backup_settings.JOB_STALE_AFTER)
    if last is not None and now - last > window:
        minutes = int((now - last).total_seconds() // 60)
        if job.status == BackupJob.Status.PENDING:
            return (f"No runner took it up in {minutes} minute{'s' if minutes != 1 else ''}: the worker or the "
                    "server that was to run it is probably stopped.")
        return (f"No sign of life for {minutes} minute{'s' if minutes != 1 else ''} while running: "
                "its process was probably stopped or restarted.")
    return None


def mark_stale_jobs() -> list[int]:
    """Mark failed, with the reason, every unfinished job whose runner is gone; returns their ids."""
    marked: list[int] = []
    try:
        for job in BackupJob.objects.filter(status__in=ACTIVE):
            reason = stale_reason(job)
            if reason and mark_failed(job.pk, reason):
                marked.append(job.pk)
    except DatabaseError as exc:
        logger.warning("Could not check the job history for stale jobs: %s", exc)
    return marked


def mark_failed(job_id: int, reason: str) -> bool:
    """Record an unfinished job as failed (a stale job, or one staff marked failed); False if it had ended."""
    now = datetime.now(UTC)
    updated = _safe(lambda: BackupJob.objects.filter(pk=job_id, status__in=ACTIVE).update(
        status=BackupJob.Status.FAILED, error=reason[:2000], finished_at=now))
    if updated:
        logger.warning("Job %s marked failed: %s", job_id, reason)
    return bool(updated)


# -- recording the operations of every front end ----------------------------------------------------------
def _safe(write: Callable[[], Any]) -> Any:
    """Run one write to the job table; a missing table or a refusing database only loses the record."""
    alias = BackupJob.objects.db
    try:
        with without_waiting(alias), transaction.atomic(using=alias):
            return write()
    except Exception as exc:  # the record is a by-product: whatever stops it must not stop the operation
        logger.warning("The job history could not be written (%s); the operation itself is not affected.", exc)
        return None


def begin(*, kind: str, backup_name: str = "", options: dict[str, Any] | None = None, database: str = "default",
          dry_run: bool = False, where: Origin | None = None) -> BackupJob | None:
    where = where or _origin.get() or Origin(BackupJob.Origin.API, process_actor())
    user = where.user if getattr(where.user, "is_authenticated", False) else None

    def create() -> BackupJob:
        return BackupJob.objects.create(
            kind=kind, status=BackupJob.Status.RUNNING, backup_name=backup_name[:255], options=options or {},
            database=database, dry_run=dry_run, origin=where.origin, actor=where.actor, user=user,
            remote_addr=where.remote_addr or None, runner=runner_id(), started_at=datetime.now(UTC),
        )

    job = _safe(create)
    if job is not None:
        _last.set(job.pk)
    return job


def end(job: BackupJob | None, *, status: str, result: dict[str, Any] | None = None, error: str = "",
        backup_name: str | None = None) -> None:
    if job is None:
        return
    fields: dict[str, Any] = {"status": status, "result": result, "error": error[:10000],
                              "finished_at": datetime.now(UTC)}
    if backup_name:
        fields["backup_name"] = backup_name[:255]
    _safe(lambda: BackupJob.objects.filter(pk=job.pk).update(**fields))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


RECORDED_OPTIONS = ("compression", "encrypt", "tenants", "dry_run", "skip_validation", "create_schema",
                    "safety_backup", "keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_safety")


def recorded(kind: str, *, outcome: Callable[[Any], tuple[str, dict[str, Any], str]] | None = None) -> Callable[[F], F]:
    """Record every call of a service as a job of ``kind``, unless it runs inside a recorded job already.

    ``outcome(result)`` gives (status, result dict, backup name) for a result; by default a success with
    the result's ``as_dict()``."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _current.get() is not None or _quiet.get():
                return func(*args, **kwargs)
            options = {k: _jsonable(kwargs[k]) for k in RECORDED_OPTIONS if kwargs.get(k) not in (None, False)}
            job = begin(kind=kind, backup_name=str(kwargs.get("file") or kwargs.get("name") or ""),
                        options=options, database=str(kwargs.get("database") or "default"),
                        dry_run=bool(kwargs.get("dry_run")))
            if job is None:
                return func(*args, **kwargs)
            token = _current.set(job.pk)
            try:
                with Heartbeat(job.pk):
                    result = func(*args, **kwargs)
            except BaseException as exc:
                end(job, status=BackupJob.Status.FAILED, error=str(exc) or type(exc).__name__,
                    result=_problems_of(exc))
                raise
            finally:
                _current.reset(token)
            data: dict[str, Any] | None
            if outcome is not None:
                status, data, name = outcome(result)
            else:
                data = result.as_dict() if hasattr(result, "as_dict") else None
                status, name = BackupJob.Status.SUCCEEDED, str(getattr(result, "name", "") or "")
            end(job, status=status, result=_jsonable(data), backup_name=name or None)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate


def _problems_of(exc: BaseException) -> dict[str, Any] | None:
    problems = getattr(exc, "problems", None)
    if not problems:
        return None
    return {"problems": [p.as_dict() for p in problems][:100], "problems_total": getattr(exc, "total", len(problems))}
