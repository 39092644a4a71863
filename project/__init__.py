"""The adcp-backup demo project. Its Celery app (project/celery.py) is loaded by `celery -A project`, by the URL
configuration (so the admin's jobs reach the broker) and on first use of ``project.celery_app``; management
commands that never send a task start without importing Celery."""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "celery_app":
        try:
            from .celery import app
        except ModuleNotFoundError as exc:  # Celery is optional: without it, schedule with cron or systemd
            if exc.name not in ("celery", "kombu"):
                raise
            return None
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["celery_app"]
