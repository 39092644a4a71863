"""The Celery application of the project: broker from CELERY_BROKER_URL, beat schedule from ADCP_BACKUP_* settings."""
from __future__ import annotations

import os
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    broker_connection_retry_on_startup=True,
)
app.autodiscover_tasks()


@app.on_after_finalize.connect  # type: ignore[untyped-decorator]  # Celery ships no type hints
def add_backup_schedule(sender: Celery, **kwargs: Any) -> None:
    """Beat entries from ADCP_BACKUP_SCHEDULE, _PRUNE_SCHEDULE and _DRILL_SCHEDULE, read once the app is set up."""
    from adcp_backup.tasks import beat_schedule

    for name, entry in beat_schedule().items():
        sender.add_periodic_task(entry["schedule"], sender.signature(entry["task"], kwargs=entry["kwargs"]), name=name)
