"""Fixtures of the admin tests: users of each role, jobs run in threads, and waiting for them."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from adcp_backup import jobs
from adcp_backup.models import BackupJob

PASSWORD = "correct horse battery staple"


def make_user(username: str, *, staff: bool = True, perms: tuple[str, ...] = (), superuser: bool = False) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=staff,
                                    is_superuser=superuser)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(content_type__app_label="adcp_backup", codename=codename))
    return user


def client_for(user: User, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def finish(job_id: int, timeout: float = 60) -> BackupJob:
    """Wait for a job's thread, then read its final record."""
    jobs.wait(job_id, timeout)
    job = BackupJob.objects.get(pk=job_id)
    assert job.status not in jobs.ACTIVE, f"job {job_id} still {job.status} after {timeout}s"
    return job


@pytest.fixture
def thread_jobs(settings: Any) -> Any:
    """Jobs run in a thread of the test process, even where CI configures a Celery broker."""
    settings.ADCP_BACKUP_JOB_RUNNER = "thread"
    yield settings
    for job in BackupJob.objects.filter(status__in=jobs.ACTIVE):
        jobs.wait(job.pk, 60)


@pytest.fixture
def admin_db(seeded: Callable[..., dict[str, int]], thread_jobs: Any) -> dict[str, int]:
    """The demo data in the default database, and jobs that run in threads."""
    return seeded()


@pytest.fixture
def view_only_client(admin_db: dict[str, int]) -> Client:
    return client_for(make_user("viewer", perms=("view_backups",)))


@pytest.fixture
def restorer_client(admin_db: dict[str, int]) -> Client:
    return client_for(make_user("restorer", perms=("view_backups", "restore_backups")))


@pytest.fixture
def outsider_client(admin_db: dict[str, int]) -> Client:
    """Not staff, though granted every backup permission: the admin still does not let them in."""
    codenames = ("view_backups", "create_backups", "validate_backups", "restore_backups", "download_backups",
                 "delete_backups", "upload_backups")
    return client_for(make_user("outsider", staff=False, perms=codenames))
