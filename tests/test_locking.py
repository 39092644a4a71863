"""Locking: concurrent backups are serialised, nothing runs during a restore, across processes and machines."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from adcp_backup import locking, services
from adcp_backup.db import mysql
from adcp_backup.exceptions import BackupLocked
from adcp_backup.progress import ProgressEvent

from .helpers import table_state
from .processes import database_url
from .scheduling_fixtures import manage, project_env, start_manage

BIG = ("--products", "40000", "--embeddings", "2000", "--dim", "768")


@pytest.fixture(scope="module")
def seeded_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo SQLite database large enough that one backup takes about a second, seeded once."""
    work = tmp_path_factory.mktemp("seeded")
    done = manage("adcp_demo", *BIG, env=project_env(work), cwd=work, timeout=300)
    assert done.returncode == 0, done.stderr
    return work


@pytest.fixture
def workdir(tmp_path: Path, seeded_database: Path, settings: Any) -> Path:
    """A copy of the seeded database and settings files; this process uses the same backup folder."""
    shutil.copy(seeded_database / "adcp.sqlite3", tmp_path / "adcp.sqlite3")
    shutil.copytree(seeded_database / "data", tmp_path / "data")
    (tmp_path / "backups").mkdir()
    settings.ADCP_BACKUP_DIR = str(tmp_path / "backups")
    return tmp_path


def backups(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def header_and_mtime(path: Path) -> tuple[datetime, float]:
    with gzip.open(path, "rb") as f:
        header = json.loads(f.readline())
    return datetime.fromisoformat(header["created_at"]), path.stat().st_mtime


@pytest.mark.slow
def test_two_concurrent_backup_processes_run_one_after_the_other_and_both_files_are_valid(workdir):
    env = project_env(workdir, ADCP_BACKUP_LOCK_TIMEOUT="120")
    first = start_manage("backup_create", "--json", "-v0", env=env, cwd=workdir)
    second = start_manage("backup_create", "--json", "-v0", env=env, cwd=workdir)
    results = [p.communicate(timeout=180) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, results
    written = [json.loads(out) for out, _err in results]
    assert sorted(w["name"] for w in written) == backups(workdir / "backups")
    for w in written:
        report = manage("backup_validate", w["name"], "--json", env=env, cwd=workdir)
        assert report.returncode == 0 and json.loads(report.stdout)["valid"] is True
        assert w["counts"] == {"tenant": 6, "product": 40000, "externalagent": 1, "product_embeddings": 2000}
    # Each file's header time is taken once its process holds the lock; its mtime is when it finished writing.
    spans = sorted(header_and_mtime(Path(w["path"])) for w in written)
    (start_a, end_a), (start_b, _end_b) = spans
    assert end_a <= start_b.timestamp(), "the two backups ran at the same time"


def test_a_second_backup_fails_clearly_when_it_may_not_wait(workdir):
    env = project_env(workdir, ADCP_BACKUP_LOCK_TIMEOUT="0")
    with locking.operation_lock("backup"):
        refused = manage("backup_create", env=env, cwd=workdir)
    assert refused.returncode == 1
    assert f"Cannot start the backup: A backup is running (process {os.getpid()}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert backups(workdir / "backups") == []


@pytest.mark.slow
def test_a_waiting_backup_starts_when_the_running_one_finishes(workdir):
    env = project_env(workdir, ADCP_BACKUP_LOCK_TIMEOUT="60")
    with locking.operation_lock("backup"):
        waiting = start_manage("backup_create", "--json", "-v0", env=env, cwd=workdir)
        time.sleep(3)
        assert waiting.poll() is None, waiting.communicate()
        released = time.time()
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    created, _ = header_and_mtime(Path(json.loads(out)["path"]))
    assert created.timestamp() >= released


def test_backup_and_prune_are_refused_at_once_during_a_restore_from_another_process(workdir):
    env = project_env(workdir, ADCP_BACKUP_LOCK_TIMEOUT="60")
    (workdir / "backups" / "keep-me.txt").write_text("not a backup")
    with locking.operation_lock("restore"):
        started = time.monotonic()
        backup = manage("backup_create", env=env, cwd=workdir)
        prune = manage("backup_prune", "--keep-last", "1", "--json", env=env, cwd=workdir)
        elapsed = time.monotonic() - started
    assert backup.returncode == 1 and prune.returncode == 1
    assert "Cannot start the backup: A restore is running" in backup.stderr
    assert "Backups and prunes are refused until it has finished" in backup.stderr
    assert json.loads(prune.stdout)["type"] == "BackupLocked"
    assert elapsed < 30, "a backup during a restore must be refused, not wait for the lock timeout"
    assert backups(workdir / "backups") == ["keep-me.txt"]


def test_backup_info_shows_what_holds_the_lock(workdir):
    env = project_env(workdir)
    with locking.operation_lock("restore"):
        info = manage("backup_info", "--json", env=env, cwd=workdir)
    held = json.loads(info.stdout)["settings"]["lock"]["held_by"]
    assert held["kind"] == "restore" and held["pid"] == os.getpid()
    after = json.loads(manage("backup_info", "--json", env=env, cwd=workdir).stdout)
    assert after["settings"]["lock"]["held_by"] is None


@pytest.fixture
def paused_restore(seeded: Any) -> Any:
    """A restore running in another thread, stopped in the middle of writing rows until released."""
    seeded()
    backup = services.backup_create()
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE tenant SET name = 'changed since the backup' WHERE id = 1")
    inside, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def progress(event: ProgressEvent) -> None:
        if event.phase == "restore" and not inside.is_set():
            inside.set()
            release.wait(60)

    def run() -> None:
        try:
            outcome["result"] = services.backup_restore(file=backup.name, progress=progress)
        except Exception as exc:  # reported to the test below
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    assert inside.wait(60), outcome
    yield backup
    release.set()
    thread.join(60)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].safety_backup, "the safety backup runs under the restore's own lock"


def test_backup_and_prune_are_refused_during_a_restore_in_this_process(paused_restore, settings):
    settings.ADCP_BACKUP_LOCK_TIMEOUT = 60
    listed = [e.name for e in services.backup_list()]
    started = time.monotonic()
    with pytest.raises(BackupLocked, match="A restore is running"):
        services.backup_create()
    with pytest.raises(BackupLocked, match="Cannot start the prune"):
        services.backup_prune(keep_last=1)
    assert time.monotonic() - started < 10
    assert [e.name for e in services.backup_list()] == listed


@pytest.mark.slow
def test_a_restore_never_waits_and_changes_nothing_while_a_backup_runs(seeded):
    seeded()
    backup = services.backup_create()
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE tenant SET name = 'changed since the backup' WHERE id = 1")
    before = table_state()
    listed = [e.name for e in services.backup_list()]
    holder = threading.Thread(target=_hold_lock_for, args=("backup", 5.0))
    holder.start()
    time.sleep(0.5)
    try:
        with pytest.raises(BackupLocked, match="Cannot start the restore: A backup is running"):
            services.backup_restore(file=backup.name)
    finally:
        holder.join()
    assert table_state() == before
    assert [e.name for e in services.backup_list()] == listed


def _hold_lock_for(kind: str, seconds: float) -> None:
    with locking.operation_lock(kind):
        time.sleep(seconds)


def test_the_lock_is_reentrant_within_a_thread_only(backup_env):
    with locking.operation_lock("restore"):
        with locking.operation_lock("backup"):
            assert locking.held_kinds() == ("restore", "backup")
        errors: list[BaseException] = []

        def other_thread() -> None:
            try:
                with locking.operation_lock("backup", timeout=0.3):
                    pass
            except BackupLocked as exc:
                errors.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert len(errors) == 1
    assert locking.held_kinds() == ()
    with locking.operation_lock("backup", timeout=0):
        pass


# -- across machines: the database lock ------------------------------------------------------------------
def server_aliases() -> list[str]:
    from django.conf import settings

    return [alias for alias in ("postgresql", "mysql") if alias in settings.DATABASES]


def database_lock_holders(alias: str) -> int:
    """Sessions other than Django's own connection that hold an adcp_backup lock on this database."""
    connection = connections[alias]
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                           "AND pid <> pg_backend_pid() AND database = (SELECT oid FROM pg_database "
                           "WHERE datname = current_database())")
            return cursor.fetchone()[0]
        cursor.execute("SELECT IS_USED_LOCK(%s), CONNECTION_ID()", [mysql.lock_name(locking.lock_name(name))])
        holder, own = cursor.fetchone()
        return 0 if holder is None or holder == own else 1


@pytest.mark.parametrize("alias", server_aliases() or [pytest.param("postgresql", marks=pytest.mark.skip(
    reason="set ADCP_TEST_POSTGRES_URL / ADCP_TEST_MYSQL_URL to test the database lock"))])
@pytest.mark.django_db(transaction=True, databases=["default", "postgresql", "mysql"])
def test_the_database_lock_refuses_a_backup_from_another_machine(alias, tmp_path, settings):
    """Another machine has its own lock folder; only the database lock stands between the two."""
    settings.ADCP_BACKUP_DIR = str(tmp_path / "here")
    assert database_lock_holders(alias) == 0
    with locking.operation_lock("backup", database=alias):
        assert database_lock_holders(alias) == 1  # a session of its own, not the connection that works
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        env = project_env(elsewhere, DATABASE_URL=database_url(alias), ADCP_BACKUP_LOCK_TIMEOUT="0")
        refused = manage("backup_create", env=env, cwd=elsewhere)
    assert refused.returncode == 1, refused.stderr
    assert "held from another machine or process" in refused.stderr
    assert not (elsewhere / "backups").exists() or backups(elsewhere / "backups") == []
    assert database_lock_holders(alias) == 0
    with locking.operation_lock("backup", database=alias, timeout=0):
        assert database_lock_holders(alias) == 1
