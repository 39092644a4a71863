"""The views of the admin's Backups page: each one checks a permission and calls one service or job."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import jobs, services, signing, uploads
from .conf import backup_settings
from .display import format_size
from .exceptions import BackupError
from .format import codecs
from .models import BackupJob
from .storage import BackupStorage

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

logger = logging.getLogger(__name__)

PER_PAGE = 25
HISTORY_ROWS = 10
PERMISSIONS = ("view", "create", "validate", "restore", "download", "delete", "upload")


# -- helpers ---------------------------------------------------------------------------------------------
def can(request: HttpRequest, action: str) -> bool:
    if action in ("restore", "upload") and not backup_settings.ADMIN_RESTORE:
        return False
    return has_perm(request, f"{action}_backups")


def has_perm(request: HttpRequest, codename: str) -> bool:
    user: Any = request.user
    return bool(user.has_perm(f"adcp_backup.{codename}"))


def require(request: HttpRequest, action: str) -> None:
    if action in ("restore", "upload") and not backup_settings.ADMIN_RESTORE:
        raise Http404("Restores from the admin are turned off on this site (ADCP_BACKUP_ADMIN_RESTORE).")
    if not has_perm(request, f"{action}_backups"):
        raise PermissionDenied


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:adcp_backup_backupfile_{name}", args=args)


def existing_name(name: str) -> str:
    """A name from the URL, checked by the storage: a plain file name that is there, or a 404."""
    try:
        return BackupStorage().require(name)
    except BackupError as exc:
        raise Http404(str(exc)) from exc


def client_address(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def context(model_admin: ModelAdmin, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    return {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.model._meta,
        "app_label": model_admin.model._meta.app_label,
        "can": {action: can(request, action) for action in PERMISSIONS},
        "list_url": url("changelist"),
        **extra,
    }


def start(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    """Start a job and show its page, or come back to the list with the reason it could not start."""
    try:
        job = jobs.start_job(user=request.user, remote_addr=client_address(request), **kwargs)
    except BackupError as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(url("changelist"))
    messages.info(request, f"{BackupJob.Kind(job.kind).label} job {job.pk} started.")
    return HttpResponseRedirect(url("job", job.pk))


def last_validations(names: list[str]) -> dict[str, BackupJob]:
    found: dict[str, BackupJob] = {}
    finished = BackupJob.objects.filter(
        kind__in=(BackupJob.Kind.VALIDATE, BackupJob.Kind.UPLOAD), backup_name__in=names,
        status__in=(BackupJob.Status.SUCCEEDED, BackupJob.Status.FAILED),
    ).order_by("-finished_at", "-id")
    for job in finished:
        found.setdefault(job.backup_name, job)
    return found


# -- forms -----------------------------------------------------------------------------------------------
class CreateForm(forms.Form):
    compression = forms.ChoiceField(choices=[(c, c) for c in codecs.SUFFIXES], required=False)


class RestoreForm(forms.Form):
    """What an admin restore asks for: dry run, the typed name, and optionally a tenant scope."""

    dry_run = forms.BooleanField(required=False, initial=True, label="Dry run: restore, report, then roll back")
    confirm_name = forms.CharField(required=False, label="Type the backup's name to restore for real")
    tenants = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Restore only these tenants",
        help_text="Leave all unticked for a full restore. A tenant restore replaces only that tenant's rows "
                  "(the tenant, its products and their embeddings); every other tenant stays as it is.",
    )

    def __init__(self, *args: Any, backup_name: str, tenant_choices: list[tuple[str, str]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backup_name = backup_name
        cast(forms.MultipleChoiceField, self.fields["tenants"]).choices = tenant_choices or []

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("dry_run") and data.get("confirm_name", "").strip() != self.backup_name:
            self.add_error("confirm_name", "Type the backup's name exactly, or tick dry run.")
        return data

    def service_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"dry_run": bool(self.cleaned_data["dry_run"])}
        if self.cleaned_data.get("tenants"):
            options["tenants"] = list(self.cleaned_data["tenants"])
        return options


def tenant_choices(name: str) -> list[tuple[str, str]]:
    """The tenants a backup holds, as form choices (one streaming read of the file)."""
    return [(t["slug"], f"{t['slug']} ({t['name']}, {t['products']} products)")
            for t in services.backup_file_tenants(file=name)]


class UploadForm(forms.Form):
    file = forms.FileField(label="Backup file")


# -- pages -----------------------------------------------------------------------------------------------
@require_GET
def backup_list(request: HttpRequest, model_admin: ModelAdmin) -> HttpResponse:
    require(request, "view")
    query = request.GET.get("q", "").strip()
    try:
        entries = services.backup_list()
        error = None
    except BackupError as exc:
        entries, error = [], str(exc)
        messages.error(request, f"The backups could not be listed: {exc}")
    if query:
        entries = [e for e in entries if query.lower() in e.name.lower()]
    page = Paginator(entries, PER_PAGE).get_page(request.GET.get("p"))
    validations = last_validations([e.name for e in page.object_list])
    rows = [{"entry": e, "validation": validations.get(e.name)} for e in page.object_list]
    active = list(BackupJob.objects.filter(status__in=jobs.ACTIVE).order_by("created_at"))
    return TemplateResponse(request, "admin/adcp_backup/backups_list.html", context(
        model_admin, request, "Backups",
        rows=rows, page=page, query=query, total=len(entries), error=error,
        running=[{"job": j, "progress": jobs.progress_of(j)} for j in active],
        history=BackupJob.objects.select_related("user")[:HISTORY_ROWS],
        create_form=CreateForm(initial={"compression": backup_settings.compression}),
        history_url=reverse("admin:adcp_backup_backupjob_changelist"),
        can_view_history=has_perm(request, "view_backupjob"),
    ))


@require_POST
def create(request: HttpRequest, model_admin: ModelAdmin) -> HttpResponse:
    require(request, "create")
    form = CreateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a compression: none, gzip or zstd.")
        return HttpResponseRedirect(url("changelist"))
    options = {"compression": form.cleaned_data["compression"] or backup_settings.compression}
    return start(request, kind=BackupJob.Kind.CREATE, options=options)


@require_POST
def validate(request: HttpRequest, model_admin: ModelAdmin, name: str) -> HttpResponse:
    require(request, "validate")
    name = existing_name(name)
    return start(request, kind=BackupJob.Kind.VALIDATE, backup_name=name)


@require_http_methods(["GET", "POST"])
def restore(request: HttpRequest, model_admin: ModelAdmin, name: str) -> HttpResponse:
    require(request, "restore")
    name = existing_name(name)
    choices: list[tuple[str, str]] = []
    # Listing the tenants reads the whole file: only for the page, or to check tenants a POST names.
    if request.method == "GET" or request.POST.getlist("tenants"):
        try:
            choices = tenant_choices(name)
        except BackupError:
            pass  # an unreadable file: the plan below says why
    form = RestoreForm(request.POST if request.method == "POST" else None, backup_name=name,
                       tenant_choices=choices, initial={"dry_run": True})
    try:
        plan = services.backup_restore_plan(file=name)
    except BackupError as exc:
        messages.error(request, f"The backup {name} cannot be restored: {exc}")
        return HttpResponseRedirect(url("changelist"))
    can_restore_unsigned = has_perm(request, "restore_unsigned_backups")
    if request.method == "POST" and form.is_valid():
        options = form.service_options()
        if not options.get("dry_run", True) and plan.provenance not in signing.TRUSTED and not can_restore_unsigned:
            messages.error(request, f"{name} is not signed by this installation ({plan.provenance_note}); restoring "
                                    "it needs the permission to restore unsigned backups. A dry run is allowed.")
            return HttpResponseRedirect(url("restore", name))
        if plan.provenance not in signing.TRUSTED and can_restore_unsigned:
            options["allow_unsigned"] = True  # a signed header's trailer is checked by the job itself
        return start(request, kind=BackupJob.Kind.RESTORE, backup_name=name, options=options)
    tables = [{"name": table, "current": plan.current_counts.get(table), "file": plan.file_counts.get(table),
               "replaced": table in plan.file_counts} for table in plan.current_counts]
    return TemplateResponse(request, "admin/adcp_backup/restore_confirm.html", context(
        model_admin, request, f"Restore {name}",
        name=name, plan=plan, tables=tables, form=form, running=jobs.restore_running(),
        can_restore_unsigned=can_restore_unsigned,
    ))


@require_GET
def download(request: HttpRequest, model_admin: ModelAdmin, name: str) -> FileResponse:
    require(request, "download")
    name = existing_name(name)
    storage = BackupStorage()
    logger.info("Backup %s downloaded by %s from %s", name, request.user, client_address(request))
    response = FileResponse(storage.open(name), as_attachment=True, filename=name,
                            content_type="application/octet-stream")
    response["Content-Length"] = str(storage.size(name))
    return response


@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest, model_admin: ModelAdmin, name: str) -> HttpResponse:
    require(request, "delete")
    name = existing_name(name)
    if request.method == "POST":
        storage = BackupStorage()
        try:
            jobs.record_job(kind=BackupJob.Kind.DELETE, backup_name=name, user=request.user,
                            remote_addr=client_address(request), options={},
                            action=lambda: storage.delete(name))
        except (BackupError, OSError) as exc:
            messages.error(request, f"The backup {name} was not deleted: {exc}")
        else:
            messages.success(request, f"The backup {name} was deleted.")
        return HttpResponseRedirect(url("changelist"))
    size = BackupStorage().size(name)
    return TemplateResponse(request, "admin/adcp_backup/delete_confirm.html", context(
        model_admin, request, f"Delete {name}", name=name, size=size,
    ))


@csrf_exempt  # the upload handlers must be set before anything reads the body; CSRF is checked just below
def upload(request: HttpRequest, model_admin: ModelAdmin) -> HttpResponse:
    require(request, "upload")
    limit = int(backup_settings.UPLOAD_MAX_SIZE)
    if request.method == "POST":
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit + 64 * 1024:  # room for the form around the file
            messages.error(request,
                           f"The file is larger than the upload limit of {format_size(limit)}; nothing was kept.")
            return HttpResponseRedirect(url("upload"))
        try:
            folder = uploads.quarantine_dir()
        except BackupError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(url("upload"))
        request.upload_handlers = [uploads.QuarantineUploadHandler(request, max_size=limit, folder=folder)]
    response = _upload_checked(request, model_admin, limit)
    if request.method == "POST" and response.status_code == 403:  # refused by the CSRF check: keep nothing
        for received in request.FILES.values():
            if isinstance(received, uploads.QuarantinedFile):
                received.discard()
    return response


@csrf_protect
@require_http_methods(["GET", "POST"])
def _upload_checked(request: HttpRequest, model_admin: ModelAdmin, limit: int) -> HttpResponse:
    received: list[uploads.QuarantinedFile] = []
    if request.method == "POST":
        handler = request.upload_handlers[0]
        received = [f for f in request.FILES.getlist("file") if isinstance(f, uploads.QuarantinedFile)]
        for extra in request.FILES.values():
            if isinstance(extra, uploads.QuarantinedFile) and extra not in received:
                extra.discard()
        if getattr(handler, "too_large", False):
            for f in received:
                f.discard()
            messages.error(request,
                           f"The file is larger than the upload limit of {format_size(limit)}; nothing was kept.")
            return HttpResponseRedirect(url("upload"))
        if len(received) != 1 or received[0].size == 0:
            for f in received:
                f.discard()
            messages.error(request, "Choose one non-empty backup file to upload.")
            return HttpResponseRedirect(url("upload"))
        quarantined = received[0]
        name = uploads.generated_name(quarantined.original_name)
        options = {"original_name": quarantined.original_name[:255], "size": quarantined.size,
                   "quarantine": str(quarantined.path)}
        try:
            job = jobs.start_job(kind=BackupJob.Kind.UPLOAD, backup_name=name, options=options,
                                 user=request.user, remote_addr=client_address(request))
        except BackupError as exc:
            quarantined.discard()
            messages.error(request, str(exc))
            return HttpResponseRedirect(url("upload"))
        messages.info(request, f"The file {quarantined.original_name} was received; it is listed as {name} once it "
                               "has been validated.")
        return HttpResponseRedirect(url("job", job.pk))
    return TemplateResponse(request, "admin/adcp_backup/upload.html", context(
        model_admin, request, "Upload a backup", form=UploadForm(), limit=format_size(limit),
    ))


@require_GET
def job_detail(request: HttpRequest, model_admin: ModelAdmin, job_id: int) -> HttpResponse:
    require(request, "view")
    job = get_object_or_404(BackupJob.objects.select_related("user"), pk=job_id)
    result = job.result or {}
    problems = result.get("problems") or []
    in_storage = False
    if job.backup_name and job.status == BackupJob.Status.SUCCEEDED:
        try:
            in_storage = BackupStorage().exists(job.backup_name)
        except BackupError:
            in_storage = False
    return TemplateResponse(request, "admin/adcp_backup/job_detail.html", context(
        model_admin, request, f"{BackupJob.Kind(job.kind).label} job {job.pk}",
        job=job, progress=jobs.progress_of(job), result=result, problems=problems,
        in_storage=in_storage, active=job.status in jobs.ACTIVE,
        counts=_counts_table(result), changes=result.get("changes") or {},
    ))


@require_GET
def job_progress(request: HttpRequest, model_admin: ModelAdmin, job_id: int) -> JsonResponse:
    require(request, "view")
    job = get_object_or_404(BackupJob, pk=job_id)
    data = jobs.progress_of(job).as_dict()
    data.update(kind=job.kind, backup_name=job.backup_name, error=job.error, url=url("job", job.pk))
    return JsonResponse(data)


def _counts_table(result: dict[str, Any]) -> list[dict[str, Any]]:
    counts = result.get("counts") or result.get("restored") or {}
    checksums = result.get("checksums") or {}
    return [{"table": t, "rows": n, "sha256": checksums.get(t)} for t, n in counts.items()]
