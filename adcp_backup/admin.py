"""The Django admin of adcp_backup: the Backups page (no table behind it) and the read-only job history."""
from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponseBase
from django.urls import URLPattern, path

from . import permissions
from .models import BackupFile, BackupJob
from .templatetags.adcp_backup_admin import duration


class NothingToAddChangeOrDelete:
    """Nobody adds, changes or deletes these rows from the admin, superusers included."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(BackupFile)
class BackupFileAdmin(NothingToAddChangeOrDelete, admin.ModelAdmin):
    """Its URLs are the Backups page's own views; the placeholder model only supplies permissions."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return permissions.can(request, "view")

    def get_urls(self) -> list[URLPattern]:
        # The views (and the services behind them) load with the URLs, on a site's first request: Django
        # imports this module while it starts, and management commands have no use for them.
        from . import admin_drill, admin_views

        prefix = f"{self.model._meta.app_label}_{self.model._meta.model_name}"

        def wrap(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
            def bound(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
                request.current_app = self.admin_site.name  # URLs reverse through the site serving the page
                return view(request, self, *args, **kwargs)

            return self.admin_site.admin_view(update_wrapper(bound, view))

        return [
            path("", wrap(admin_views.backup_list), name=f"{prefix}_changelist"),
            path("create/", wrap(admin_views.create), name=f"{prefix}_create"),
            path("upload/", wrap(admin_views.upload), name=f"{prefix}_upload"),
            path("prune/", wrap(admin_views.prune), name=f"{prefix}_prune"),
            path("jobs/<int:job_id>/", wrap(admin_views.job_detail), name=f"{prefix}_job"),
            path("jobs/<int:job_id>/fail/", wrap(admin_views.job_mark_failed), name=f"{prefix}_job_fail"),
            path("jobs/<int:job_id>/progress/", wrap(admin_views.job_progress), name=f"{prefix}_job_progress"),
            # <path:> on purpose: every name, slashes and dots included, reaches BackupStorage.resolve().
            path("file/<path:name>/validate/", wrap(admin_views.validate), name=f"{prefix}_validate"),
            path("file/<path:name>/restore/", wrap(admin_views.restore), name=f"{prefix}_restore"),
            path("file/<path:name>/download/", wrap(admin_views.download), name=f"{prefix}_download"),
            path("file/<path:name>/delete/", wrap(admin_views.delete), name=f"{prefix}_delete"),
            path("file/<path:name>/drill/", wrap(admin_drill.start_drill), name=f"{prefix}_drill"),
        ]


@admin.register(BackupJob)
class BackupJobAdmin(NothingToAddChangeOrDelete, admin.ModelAdmin):
    """The audit trail: visible to those allowed to view it, changed by nobody from here."""

    list_display = ("id", "kind", "dry_run", "backup_name", "status", "who", "remote_addr", "origin", "database",
                    "created_at", "took")
    list_filter = ("kind", "status", "origin", "dry_run", "database")
    search_fields = ("backup_name", "error")
    date_hierarchy = "created_at"
    list_select_related = ("user",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in self.model._meta.fields]

    @admin.display(description="By")
    def who(self, job: BackupJob) -> str:
        return job.who

    @admin.display(description="Duration")
    def took(self, job: BackupJob) -> str:
        return duration(job.duration)

