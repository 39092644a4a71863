"""The Django application configuration of adcp_backup."""
from __future__ import annotations

from django.apps import AppConfig


class AdcpBackupConfig(AppConfig):
    name = "adcp_backup"
    verbose_name = "AdCP backups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, notifications, signals

        checks.register()
        signals.backup_failed.connect(notifications.mail_admins_on_scheduled_failure,
                                      dispatch_uid="adcp_backup.notify_admins")
        signals.drill_failed.connect(notifications.mail_admins_on_drill_failure,
                                     dispatch_uid="adcp_backup.notify_admins_drill")
