"""Who may do what on the admin's Backups page: one gate for every view, button and the model admin itself."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from .conf import backup_settings

# Each action is guarded by the permission "<action>_backups" of the BackupFile placeholder model.
ACTIONS = ("view", "create", "validate", "restore", "download", "delete", "upload", "drill")
# Actions that write into the live database or its storage from a browser: ADCP_BACKUP_ADMIN_RESTORE turns them off.
RESTORING = ("restore", "upload")


def has_perm(request: HttpRequest, codename: str) -> bool:
    user: Any = request.user
    return bool(user.has_perm(f"adcp_backup.{codename}"))


def turned_off(action: str) -> bool:
    return action in RESTORING and not backup_settings.ADMIN_RESTORE


def can(request: HttpRequest, action: str) -> bool:
    """The one permission gate: ``action`` is one of ACTIONS; restore and upload also need the setting."""
    return not turned_off(action) and has_perm(request, f"{action}_backups")


def require(request: HttpRequest, action: str) -> None:
    """Refuse the request unless ``can(request, action)``: a 404 where the setting turns the action off."""
    if can(request, action):
        return
    if turned_off(action):
        raise Http404("Restores from the admin are turned off on this site (ADCP_BACKUP_ADMIN_RESTORE).")
    raise PermissionDenied


def can_end_jobs(request: HttpRequest) -> bool:
    """Marking a stuck job failed takes the restore permission, even where restores from the admin are off:
    a stuck backup must not block the site's scheduled ones."""
    return has_perm(request, "restore_backups")
