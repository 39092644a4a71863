"""The Django application configuration of adcp_backup."""
from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class AdcpBackupConfig(AppConfig):
    name = "adcp_backup"
    verbose_name = "AdCP backups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Only what every command needs is imported here; the rest waits until it is used, so a command that
        # touches neither the admin nor Celery starts quickly.
        from . import checks, signals

        checks.register()
        signals.backup_failed.connect(_notify_admins, dispatch_uid="adcp_backup.notify_admins")
        signals.drill_failed.connect(_notify_admins_of_drill, dispatch_uid="adcp_backup.notify_admins_drill")


def _notify_admins(sender: Any, **kwargs: Any) -> None:
    from .notifications import mail_admins_on_scheduled_failure

    mail_admins_on_scheduled_failure(sender, **kwargs)


def _notify_admins_of_drill(sender: Any, **kwargs: Any) -> None:
    from .notifications import mail_admins_on_drill_failure

    mail_admins_on_drill_failure(sender, **kwargs)
