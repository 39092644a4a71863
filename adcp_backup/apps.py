"""The Django application configuration of adcp_backup."""
from __future__ import annotations

from django.apps import AppConfig


class AdcpBackupConfig(AppConfig):
    name = "adcp_backup"
    verbose_name = "AdCP backups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks

        checks.register()
