"""A database router for projects whose AdCP tables live in other databases than ``default``.

Django's own commands that walk every model (``dumpdata``, ``flush``) ask the routers which database holds a
model. Without an answer they assume every database holds every model, and ``dumpdata`` of ``default`` then
fails on the AdCP tables when they live elsewhere. This router answers for the four unmanaged AdCP models only:
they are in the databases named by ADCP_BACKUP_DATABASES. Every other model is left to the other routers.
"""
from __future__ import annotations

from typing import Any

from .conf import backup_settings

ADCP_MODELS = frozenset({"tenant", "product", "externalagent", "productembedding"})


class AdcpTablesRouter:
    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        if app_label != "adcp_backup" or model_name not in ADCP_MODELS:
            return None
        return db in backup_settings.DATABASES
