"""The admin's "Test restore": a restore drill of one backup started as a job, and each backup's last verdict."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_POST

from . import admin_views, drill
from .models import BackupJob
from .permissions import require

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin


@require_POST
def start_drill(request: HttpRequest, model_admin: ModelAdmin, name: str) -> HttpResponse:
    """Queue a drill of one backup in storage; its job page shows the progress and the verdict."""
    require(request, "drill")
    name = admin_views.existing_name(name)
    return admin_views.start(request, model_admin, kind=BackupJob.Kind.DRILL, backup_name=name)


def last_verdicts(names: list[str]) -> dict[str, dict[str, Any]]:
    """Each backup's newest drill verdict, from the admin's drill jobs and the drill state file (cron, Celery)."""
    found: dict[str, dict[str, Any]] = {}
    jobs = BackupJob.objects.filter(kind=BackupJob.Kind.DRILL, backup_name__in=names,
                                    status__in=(BackupJob.Status.SUCCEEDED, BackupJob.Status.FAILED))
    for job in jobs.order_by("-finished_at", "-id"):
        if job.backup_name in found:
            continue
        result = job.result or {}
        found[job.backup_name] = {"restorable": job.status == BackupJob.Status.SUCCEEDED, "job": job.pk,
                                  "finished_at": job.finished_at.isoformat() if job.finished_at else None,
                                  "restore_seconds": result.get("restore_seconds"), "error": job.error}
    for entry in drill.read_state().values():
        name = entry.get("name")
        if name in names and (name not in found or str(entry.get("finished_at") or "")
                              > str(found[name].get("finished_at") or "")):
            found[name] = {"restorable": bool(entry.get("restorable")), "job": None,
                           "finished_at": entry.get("finished_at"), "restore_seconds": entry.get("restore_seconds"),
                           "error": "; ".join(entry.get("problems") or []) or entry.get("error")}
    return found
