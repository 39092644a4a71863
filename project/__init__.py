"""The adcp-backup demo project; its Celery app is loaded when Celery is installed."""
try:
    from .celery import app as celery_app
except ModuleNotFoundError as exc:  # Celery is optional: without it, schedule backups with cron or systemd
    if exc.name not in ("celery", "kombu"):
        raise
    celery_app = None

__all__ = ["celery_app"]
