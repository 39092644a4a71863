"""A project with its own admin sites and no default one: "ops" has the Backups page and the job history,
"bare" only the Backups page."""
from __future__ import annotations

from django.contrib import admin
from django.urls import path

from adcp_backup.admin import BackupFileAdmin, BackupJobAdmin
from adcp_backup.models import BackupFile, BackupJob

ops = admin.AdminSite(name="ops")
ops.register(BackupFile, BackupFileAdmin)
ops.register(BackupJob, BackupJobAdmin)

bare = admin.AdminSite(name="bare")
bare.register(BackupFile, BackupFileAdmin)

urlpatterns = [path("ops/", ops.urls), path("bare/", bare.urls)]
