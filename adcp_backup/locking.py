"""One lock for backups, restores and prunes: a lock file on this machine, an advisory lock in the database.

Two backups never run at once, and nothing runs during a restore, whoever starts them (Celery, cron, the
admin, a shell). The lock file (``fcntl.flock`` on ``.adcp-backup.lock`` in ``ADCP_BACKUP_LOCK_DIR``, by
default the backup folder) covers the processes of one machine; on PostgreSQL and MariaDB a session lock
(``pg_try_advisory_lock`` / ``GET_LOCK``) held on a connection of its own covers every machine that shares
the database. A backup or prune waits up to ``ADCP_BACKUP_LOCK_TIMEOUT`` seconds for a running backup or
prune, and is refused at once while a restore runs; a restore never waits. The lock is re-entrant within
a thread, so the safety backup a restore takes runs under the restore's own lock.
"""
from __future__ import annotations

import errno
import fcntl
import functools
import json
import logging
import os
import platform
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from django.db import DatabaseError, connections

from .conf import backup_settings
from .db import engine_for
from .exceptions import BackupConfigurationError, BackupError, BackupLocked

logger = logging.getLogger(__name__)

LOCK_FILE_NAME = ".adcp-backup.lock"
KINDS = ("backup", "restore", "prune")
POLL_INTERVAL = 0.1

_local = threading.local()

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as written into the lock file by its holder."""

    kind: str
    pid: int
    host: str
    since: str
    database: str

    def describe(self) -> str:
        return f"A {self.kind} is running (process {self.pid} on {self.host}, since {self.since})"


def lock_path() -> Path:
    return (backup_settings.LOCK_DIR or backup_settings.DIR) / LOCK_FILE_NAME


def _held() -> list[str]:
    if not hasattr(_local, "kinds"):
        _local.kinds = []
    return _local.kinds


def held_kinds() -> tuple[str, ...]:
    """The kinds of operation this thread holds the lock for (outermost first)."""
    return tuple(_held())


@contextmanager
def operation_lock(kind: str, *, database: str = "default", timeout: float | None = None) -> Iterator[None]:
    """Hold the lock for one backup, restore or prune; raise BackupLocked when another one holds it."""
    if kind not in KINDS:
        raise ValueError(f"unknown operation {kind!r}")
    held = _held()
    if held:  # re-entrant: the safety backup inside a restore, a prune calling list, ...
        held.append(kind)
        try:
            yield
        finally:
            held.pop()
        return
    if timeout is None:
        timeout = 0.0 if kind == "restore" else backup_settings.LOCK_TIMEOUT
    deadline = time.monotonic() + max(0.0, timeout)
    with _file_lock(kind, database, deadline), _database_lock(kind, database, deadline):
        held.append(kind)
        try:
            yield
        finally:
            held.pop()


def locked(kind: str) -> Callable[[F], F]:
    """Decorate a service so that it runs under the lock, for the ``database`` keyword it is given."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with operation_lock(kind, database=kwargs.get("database", "default")):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def current_holder() -> Holder | None:
    """Who holds the lock on this machine now, or None when it is free."""
    path = lock_path()
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# -- this machine: a lock file ---------------------------------------------------------------------------
@contextmanager
def _file_lock(kind: str, database: str, deadline: float) -> Iterator[None]:
    path = lock_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Never through a symbolic link: in a shared lock folder one could point at any file we can write.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BackupConfigurationError(
                f"The lock file {path} is a symbolic link; it was not followed. Remove it, or set "
                "ADCP_BACKUP_LOCK_DIR to a folder only this user can write."
            ) from exc
        raise BackupConfigurationError(
            f"Cannot open the lock file {path}: {exc.strerror}. Set ADCP_BACKUP_LOCK_DIR to a writable folder."
        ) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BackupConfigurationError(f"The lock file {path} is not a regular file; it was left alone.")
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            holder = _read_holder(fd)
            if (holder is not None and holder.kind == "restore") or time.monotonic() >= deadline:
                raise BackupLocked(_refusal(kind, holder, path))
            time.sleep(POLL_INTERVAL)
        _write_holder(fd, kind, database)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _write_holder(fd: int, kind: str, database: str) -> None:
    record = {"kind": kind, "pid": os.getpid(), "host": platform.node(), "database": database,
              "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    os.fsync(fd)


def _read_holder(fd: int) -> Holder | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
        return Holder(kind=str(data["kind"]), pid=int(data["pid"]), host=str(data["host"]),
                      since=str(data["since"]), database=str(data.get("database", "default")))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _refusal(kind: str, holder: Holder | None, where: object) -> str:
    running = holder.describe() if holder else f"Another backup, restore or prune holds the lock ({where})"
    if holder is not None and holder.kind == "restore" and kind != "restore":
        return f"Cannot start the {kind}: {running}. Backups and prunes are refused until it has finished."
    return f"Cannot start the {kind}: {running}. Try again when it has finished."


# -- every machine: a session lock in the database ------------------------------------------------------
def lock_name(database_name: str) -> str:
    """The name of one database's lock; each engine makes its own kind of key of it."""
    return f"adcp_backup:{database_name}"


@contextmanager
def _database_lock(kind: str, alias: str, deadline: float) -> Iterator[None]:
    if alias not in connections.settings:
        yield  # the service reports the unknown alias in its own words
        return
    connection = connections.create_connection(alias)  # its own session, never the one that restores
    try:
        engine = engine_for(connection)
        if not engine.shares_lock:
            yield  # SQLite is a file on this machine: the lock file covers every process that can open it
            return
        name = lock_name(str(connection.settings_dict["NAME"]))
        try:
            taken = engine.try_lock(name)
        except DatabaseError as exc:
            raise BackupError(f"Cannot take the backup lock in database {alias!r}: {exc}") from exc
        while not taken:
            if time.monotonic() >= deadline:
                raise BackupLocked(_refusal(kind, None, f"database {alias!r}, held from another machine "
                                                         "or process"))
            time.sleep(POLL_INTERVAL)
            taken = engine.try_lock(name)
        try:
            yield
        finally:
            try:
                engine.unlock(name)
            except DatabaseError:
                logger.warning("Could not release the database lock of %r; closing its session frees it.", alias)
    finally:
        connection.close()
