"""The views of the admin's Backups page: each one checks a permission and calls one service or job."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import ADDITION, LogEntry
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import DatabaseError, transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import history, jobs, keys, services, signing, uploads
from .conf import backup_settings
from .db import without_waiting
from .display import ENCRYPTED_WITHOUT_KEY, for_browser, format_size
from .exceptions import BackupError, EncryptionKeyError, OtherDatabase
from .format import codecs
from .models import BackupFile, BackupJob
from .permissions import ACTIONS, can, can_end_jobs, has_perm, require
from .results import BackupEntry
from .storage import BackupStorage

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

logger = logging.getLogger(__name__)

PER_PAGE = 25
HISTORY_ROWS = 10
FILTERS: dict[str, tuple[str, Callable[[BackupEntry], bool] | None]] = {
    "regular": ("Regular", lambda e: e.purpose not in ("safety",) and not e.name.startswith(uploads.UPLOAD_PREFIX)),
    "safety": ("Safety backups", lambda e: e.purpose == "safety"),
    "uploaded": ("Uploaded", lambda e: e.name.startswith(uploads.UPLOAD_PREFIX)),
    "encrypted": ("Encrypted", lambda e: e.encrypted),
    "invalid": ("Invalid or unreadable", None),  # needs the validation verdicts: see filtered()
}
SORTS = {"created": "Created", "name": "Name", "size": "Size"}


# -- permissions, URLs, messages -------------------------------------------------------------------------
def url(request: HttpRequest, name: str, *args: Any) -> str:
    """A URL of this page, through the admin site that serves the request ("admin" is the application
    namespace; request.current_app picks the site's instance, as the admin's own views do)."""
    return reverse(f"admin:adcp_backup_backupfile_{name}", args=args, current_app=site_name(request))


def site_name(request: HttpRequest) -> str:
    return str(getattr(request, "current_app", None) or "admin")


def history_url(request: HttpRequest, model_admin: ModelAdmin[BackupFile]) -> str | None:
    """The job history's change list on this site, or None when the job model is not registered here."""
    if not model_admin.admin_site.is_registered(BackupJob) or not has_perm(request, "view_backupjob"):
        return None
    try:
        return reverse("admin:adcp_backup_backupjob_changelist", current_app=site_name(request))
    except NoReverseMatch:
        return None


def browser_message(exc: BaseException) -> str:
    """A service's error as a sentence for the browser: no command-line options in it."""
    if isinstance(exc, EncryptionKeyError):
        return ENCRYPTED_WITHOUT_KEY
    return for_browser(str(exc))


def existing_name(name: str) -> str:
    """A name from the URL, checked by the storage: a plain file name that is there, or a 404."""
    try:
        return BackupStorage().require(name)
    except BackupError as exc:
        raise Http404(str(exc)) from exc


def client_address(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def admin_origin(request: HttpRequest) -> history.Origin:
    return history.Origin(BackupJob.Origin.ADMIN, user=request.user, remote_addr=client_address(request))


def log_action(request: HttpRequest, job_id: int | None, message: str) -> None:
    """The admin's "Recent actions" entry for a job started or done from this page."""
    if not job_id:
        return
    try:
        with without_waiting(BackupJob.objects.db), transaction.atomic(using=BackupJob.objects.db):
            job = BackupJob.objects.filter(pk=job_id).first()
            if job is not None and request.user.is_authenticated:
                # What ModelAdmin.log_addition does, for the job (this page's admin is the placeholder's).
                LogEntry.objects.log_actions(user_id=request.user.pk, queryset=[job], action_flag=ADDITION,
                                             change_message=message, single_object=True)
    except DatabaseError as exc:  # SQLite write-locked by a restore: the job history has it anyway
        logger.warning("The admin log entry %r was not written: %s", message, exc)


def databases() -> list[str]:
    from django.conf import settings

    aliases = backup_settings.ADMIN_DATABASES or backup_settings.DATABASES
    return [alias for alias in aliases if alias in settings.DATABASES] or ["default"]


def chosen_database(request: HttpRequest) -> str:
    """The database the page works on: ?database= (or the form's), among ADCP_BACKUP_ADMIN_DATABASES."""
    wanted = request.POST.get("database") or request.GET.get("database") or ""
    aliases = databases()
    return wanted if wanted in aliases else aliases[0]


def context(model_admin: ModelAdmin[BackupFile], request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    return {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.model._meta,
        "app_label": model_admin.model._meta.app_label,
        "can": {action: can(request, action) for action in ACTIONS},
        "list_url": url(request, "changelist"),
        "databases": databases(),
        "database": chosen_database(request),
        **extra,
    }


def start(request: HttpRequest, model_admin: ModelAdmin[BackupFile], *, back: str | None = None,
          **kwargs: Any) -> HttpResponse:
    """Start a job and show its page, or go back with the reason it could not start."""

    def log(job: BackupJob) -> None:
        label = BackupJob.Kind(job.kind).label + (" (dry run)" if job.dry_run else "")
        log_action(request, job.pk, f"{label} of {job.backup_name or 'a new backup'} started")

    try:
        job = jobs.start_job(user=request.user, remote_addr=client_address(request), recorded=log, **kwargs)
    except BackupError as exc:
        messages.error(request, browser_message(exc))
        return HttpResponseRedirect(back or url(request, "changelist"))
    # No "started" message: the job's page says it, and a message would show in whichever tab loads next.
    return HttpResponseRedirect(url(request, "job", job.pk))


@dataclass(frozen=True)
class Verdict:
    """The last validation verdict of a file, from the job history."""

    job: BackupJob

    @property
    def valid(self) -> bool:
        return self.job.status == BackupJob.Status.SUCCEEDED and bool((self.job.result or {}).get("valid"))

    @property
    def invalid(self) -> bool:
        return self.job.status == BackupJob.Status.INVALID or (
            self.job.status == BackupJob.Status.SUCCEEDED and (self.job.result or {}).get("valid") is False)

    @property
    def problems_total(self) -> int:
        return int((self.job.result or {}).get("problems_total") or 0)


def last_validations(names: list[str]) -> dict[str, Verdict]:
    found: dict[str, Verdict] = {}
    finished = BackupJob.objects.filter(
        kind__in=(BackupJob.Kind.VALIDATE, BackupJob.Kind.UPLOAD), backup_name__in=names,
        status__in=(BackupJob.Status.SUCCEEDED, BackupJob.Status.INVALID),
    ).order_by("-finished_at", "-id")
    for job in finished:
        found.setdefault(job.backup_name, Verdict(job))
    return found


# -- forms -----------------------------------------------------------------------------------------------
class CreateForm(forms.Form):
    compression = forms.ChoiceField(choices=[(c, c) for c in codecs.SUFFIXES], required=False)
    encrypt = forms.BooleanField(required=False, label="Encrypt with age")
    database = forms.ChoiceField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["database"]).choices = [(a, a) for a in databases()]
        if not encryption_available():
            del self.fields["encrypt"]


def encryption_available() -> bool:
    try:
        return bool(keys.configured_recipients())
    except BackupError:
        return False


class RestoreForm(forms.Form):
    """What an admin restore asks for: dry run, the typed name, and optionally a tenant scope."""

    dry_run = forms.BooleanField(required=False, initial=True, label="Dry run: restore, report, then roll back")
    confirm_name = forms.CharField(required=False, label="Type the backup's name to restore for real")
    database = forms.ChoiceField(required=False, label="Into the database")
    from_other_database = forms.BooleanField(
        required=False, label="Restore it although it was taken from another database")
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
        cast(forms.ChoiceField, self.fields["database"]).choices = [(a, a) for a in databases()]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("dry_run") and data.get("confirm_name", "").strip() != self.backup_name:
            self.add_error("confirm_name", "Type the backup's name exactly, or tick dry run.")
        return data

    def service_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"dry_run": bool(self.cleaned_data["dry_run"])}
        if self.cleaned_data.get("tenants"):
            options["tenants"] = list(self.cleaned_data["tenants"])
        if self.cleaned_data.get("from_other_database"):
            options["from_other_database"] = True
        return options


def tenant_choices(name: str) -> list[tuple[str, str]]:
    """The tenants a backup holds, as form choices (one streaming read of the file)."""
    return [(t["slug"], f"{t['slug']} ({t['name']}, {t['products']:,} products)")
            for t in services.backup_file_tenants(file=name)]


class UploadForm(forms.Form):
    file = forms.FileField(label="Backup file")


# -- the list --------------------------------------------------------------------------------------------
def filtered(entries: list[BackupEntry], verdicts: dict[str, Verdict], show: str) -> list[BackupEntry]:
    if show == "invalid":
        return [e for e in entries if e.error or (e.name in verdicts and verdicts[e.name].invalid)]
    test = FILTERS.get(show, (None, None))[1]
    return [e for e in entries if test(e)] if test else entries


def sorted_entries(entries: list[BackupEntry], order: str) -> list[BackupEntry]:
    field, descending = order.lstrip("-"), order.startswith("-")
    if field == "name":
        return sorted(entries, key=lambda e: e.name, reverse=descending)
    if field == "size":
        return sorted(entries, key=lambda e: e.size, reverse=descending)
    if descending:  # the service lists newest first
        return entries
    return list(reversed(entries))


@require_http_methods(["GET", "POST"])
def backup_list(request: HttpRequest, model_admin: ModelAdmin[BackupFile]) -> HttpResponse:
    require(request, "view")
    if request.method == "POST":
        return bulk_action(request, model_admin)
    query = request.GET.get("q", "").strip()
    show = request.GET.get("show", "")
    show = show if show in FILTERS else ""
    order = request.GET.get("o", "-created")
    order = order if order.lstrip("-") in SORTS else "-created"
    try:
        entries = services.backup_list(database=chosen_database(request))  # that database's backups only
        error = None
    except BackupError as exc:
        entries, error = [], browser_message(exc)
        messages.error(request, f"The backups could not be listed: {error}")
    if query:
        entries = [e for e in entries if query.lower() in e.name.lower()]
    verdicts = last_validations([e.name for e in entries]) if show == "invalid" else {}
    entries = sorted_entries(filtered(entries, verdicts, show), order)
    page = Paginator(entries, PER_PAGE).get_page(request.GET.get("p"))
    verdicts = verdicts or last_validations([e.name for e in page.object_list])
    rows = [{"entry": e, "validation": verdicts.get(e.name)} for e in page.object_list]
    history.mark_stale_jobs()
    active = list(BackupJob.objects.filter(status__in=jobs.ACTIVE).select_related("user").order_by("created_at"))
    params = {"q": query, "show": show, "o": order}
    return TemplateResponse(request, "admin/adcp_backup/backups_list.html", context(
        model_admin, request, "Backups",
        rows=rows, page=page, query=query, total=len(entries), error=error,
        running=[{"job": j, "progress": jobs.progress_of(j)} for j in active],
        history=BackupJob.objects.select_related("user")[:HISTORY_ROWS],
        create_form=CreateForm(initial={"compression": backup_settings.COMPRESSION,
                                        "encrypt": backup_settings.ENCRYPT,
                                        "database": chosen_database(request)}),
        history_url=history_url(request, model_admin),
        filters=[{"key": k, "label": label, "selected": k == show, "query": query_string(params, show=k, p="")}
                 for k, (label, _) in FILTERS.items()],
        all_query=query_string(params, show="", p=""),
        sorts=[{"key": k, "label": label, "order": order, "query": query_string(
                    params, o=(k if order == f"-{k}" else f"-{k}"), p="")} for k, label in SORTS.items()],
        page_query=query_string(params, p=""),
        can_bulk_delete=can(request, "delete"),
        can_prune=can(request, "delete"),
        action_checkbox_name=ACTION_CHECKBOX_NAME,
    ))


def query_string(params: dict[str, str], **changes: str) -> str:
    from urllib.parse import urlencode

    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v})


def bulk_action(request: HttpRequest, model_admin: ModelAdmin[BackupFile]) -> HttpResponse:
    """The list's action: delete the ticked backups, after Django's own confirmation page."""
    if request.POST.get("action") != "delete_selected":
        messages.warning(request, "Choose an action.")
        return HttpResponseRedirect(url(request, "changelist"))
    require(request, "delete")
    names = [existing_name(n) for n in request.POST.getlist(ACTION_CHECKBOX_NAME)]
    if not names:
        messages.warning(request, "Tick the backups to delete first.")
        return HttpResponseRedirect(url(request, "changelist"))
    if request.POST.get("post") != "yes":
        storage = BackupStorage()
        objects = [Selected(pk=n, label=f"{n} ({format_size(storage.size(n))})") for n in names]
        return TemplateResponse(request, "admin/delete_selected_confirmation.html", context(
            model_admin, request, "Delete the selected backups?",
            objects_name="backups", deletable_objects=[[o.label for o in objects]], queryset=objects,
            model_count=[("backups", len(objects))], perms_lacking=set(), protected=[],
            action_checkbox_name=ACTION_CHECKBOX_NAME, media=model_admin.media,
            # Django 6.1's template reads it (None: list every object)
            delete_confirmation_max_display=getattr(model_admin, "delete_confirmation_max_display", None),
        ))
    deleted, failed = [], []
    with history.origin(admin_origin(request)):
        for name in names:
            try:
                services.backup_delete(name=name, database=chosen_database(request))
            except BackupError as exc:
                failed.append(f"{name}: {browser_message(exc)}")
            else:
                deleted.append(name)
                log_action(request, history.last_recorded(), f"Deleted {name}")
    if deleted:
        messages.success(request, f"{len(deleted)} backup{'s' if len(deleted) != 1 else ''} deleted.")
    for reason in failed:
        messages.error(request, f"Not deleted: {reason}")
    return HttpResponseRedirect(url(request, "changelist"))


@dataclass(frozen=True)
class Selected:
    """One ticked backup, as Django's confirmation page expects an object: a pk and a label."""

    pk: str
    label: str

    def __str__(self) -> str:
        return self.label


# -- actions ---------------------------------------------------------------------------------------------
@require_POST
def create(request: HttpRequest, model_admin: ModelAdmin[BackupFile]) -> HttpResponse:
    require(request, "create")
    form = CreateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a compression (none, gzip or zstd) and a database from the lists.")
        return HttpResponseRedirect(url(request, "changelist"))
    options: dict[str, Any] = {"compression": form.cleaned_data["compression"] or backup_settings.COMPRESSION}
    if "encrypt" in form.fields:
        options["encrypt"] = bool(form.cleaned_data.get("encrypt"))
    return start(request, model_admin, kind=BackupJob.Kind.CREATE, options=options,
                 database=form.cleaned_data.get("database") or databases()[0])


@require_POST
def validate(request: HttpRequest, model_admin: ModelAdmin[BackupFile], name: str) -> HttpResponse:
    require(request, "validate")
    name = existing_name(name)
    return start(request, model_admin, kind=BackupJob.Kind.VALIDATE, backup_name=name,
                 database=chosen_database(request))


def describe_file(name: str) -> BackupEntry | None:
    """The list entry of one backup (format, encryption, scope, and the slot for its provenance)."""
    try:
        return next((e for e in services.backup_list() if e.name == name), None)
    except BackupError:
        return None


@require_http_methods(["GET", "POST"])
def restore(request: HttpRequest, model_admin: ModelAdmin[BackupFile], name: str) -> HttpResponse:
    require(request, "restore")
    name = existing_name(name)
    verdict = last_validations([name]).get(name)
    if verdict is not None and verdict.invalid:
        if request.method == "POST":
            messages.error(request, f"The backup {name} failed its last validation; it is not restored.")
        return TemplateResponse(request, "admin/adcp_backup/restore_confirm.html", context(
            model_admin, request, f"Restore {name}", name=name, verdict=verdict, refused=True,
            entry=describe_file(name),
        ), status=409 if request.method == "POST" else 200)
    form = RestoreForm(request.POST if request.method == "POST" else None, backup_name=name,
                       tenant_choices=_choices(name) if request.method == "GET" or request.POST.getlist("tenants")
                       else [], initial={"dry_run": True, "database": chosen_database(request)})
    can_restore_unsigned = has_perm(request, "restore_unsigned_backups")
    if request.method == "POST" and form.is_valid() and not _from_elsewhere(form, name):
        options = form.service_options()
        if not options["dry_run"] and (verdict is None or not verdict.valid):
            options["validate_first"] = True
        refusal = _unsigned_refusal(name, options, form.cleaned_data.get("database") or databases()[0],
                                    can_restore_unsigned)
        if refusal is not None:
            messages.error(request, refusal)
            return HttpResponseRedirect(url(request, "restore", name))
        return start(request, model_admin, kind=BackupJob.Kind.RESTORE, backup_name=name, options=options,
                     database=form.cleaned_data.get("database") or databases()[0],
                     back=url(request, "restore", name))
    if request.method == "POST" and not form.fields["tenants"].choices:  # type: ignore[attr-defined]
        # the page comes back with its errors: with every section it had, the tenant list included
        form.fields["tenants"].choices = _choices(name)  # type: ignore[attr-defined]
    database = (form.data.get("database") if form.is_bound else None) or chosen_database(request)
    database = database if database in databases() else databases()[0]
    try:
        # The plan is shown whatever the backup's origin; restoring another database's backup needs the box ticked.
        plan = services.backup_restore_plan(file=name, database=database, from_other_database=True)
    except BackupError as exc:
        messages.error(request, f"The backup {name} cannot be restored: {browser_message(exc)}")
        return HttpResponseRedirect(url(request, "changelist"))
    tables = [{"name": table, "current": plan.current_counts.get(table), "file": plan.file_counts.get(table),
               "replaced": table in plan.file_counts} for table in plan.current_counts]
    return TemplateResponse(request, "admin/adcp_backup/restore_confirm.html", context(
        model_admin, request, f"Restore {name}",
        name=name, plan=plan, tables=tables, form=form, running=jobs.restore_running(), verdict=verdict,
        entry=describe_file(name), restore_database=database, can_restore_unsigned=can_restore_unsigned,
    ))


def _from_elsewhere(form: RestoreForm, name: str) -> bool:
    """Whether the backup comes from another database than the chosen one while the form does not allow it
    (the refusal then stands on the form, which is shown again)."""
    if form.cleaned_data.get("from_other_database"):
        return False
    database = form.cleaned_data.get("database") or databases()[0]
    try:
        services.backup_restore_plan(file=name, database=database)
    except OtherDatabase as exc:
        form.add_error("from_other_database", str(exc).replace("pass --from-other-database", "tick this box"))
        return True
    except BackupError:
        return False  # the job reports it
    return False


def _choices(name: str) -> list[tuple[str, str]]:
    # Listing the tenants reads the whole file: only for the page, or to check tenants a POST names.
    try:
        return tenant_choices(name)
    except BackupError:
        return []  # an unreadable file: the plan says why


def _unsigned_refusal(name: str, options: dict[str, Any], database: str, allowed: bool) -> str | None:
    """Why a restore of ``name`` may not start (a real restore of a file not signed here, without the permission
    to restore one), else None; with the permission, the job is told it may restore it."""
    try:
        plan = services.backup_restore_plan(file=name, database=database)
    except BackupError:
        return None  # the job reports what is wrong with the file
    if plan.provenance in signing.TRUSTED:
        return None  # a signed header's trailer is checked by the job itself
    if allowed:
        options["allow_unsigned"] = True
        return None
    if options.get("dry_run", True):
        return None
    return (f"{name} is not signed by this installation ({plan.provenance_note}); restoring it needs the permission "
            "to restore unsigned backups. A dry run is allowed.")


@require_GET
def download(request: HttpRequest, model_admin: ModelAdmin[BackupFile], name: str) -> FileResponse:
    require(request, "download")
    name = existing_name(name)
    storage = BackupStorage()
    jobs.record_download(name=name, user=request.user, remote_addr=client_address(request),
                         database=chosen_database(request))
    log_action(request, history.last_recorded(), f"Downloaded {name}")
    logger.info("Backup %s downloaded by %s from %s", name, request.user, client_address(request))
    response = FileResponse(storage.open(name), as_attachment=True, filename=name,
                            content_type="application/octet-stream")
    response["Content-Length"] = str(storage.size(name))
    return response


@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest, model_admin: ModelAdmin[BackupFile], name: str) -> HttpResponse:
    require(request, "delete")
    name = existing_name(name)
    if request.method == "POST":
        try:
            with history.origin(admin_origin(request)):
                services.backup_delete(name=name, database=chosen_database(request))
        except BackupError as exc:
            messages.error(request, f"The backup {name} was not deleted: {browser_message(exc)}")
        else:
            log_action(request, history.last_recorded(), f"Deleted {name}")
            messages.success(request, f"The backup {name} was deleted.")
        return HttpResponseRedirect(url(request, "changelist"))
    size = BackupStorage().size(name)
    return TemplateResponse(request, "admin/adcp_backup/delete_confirm.html", context(
        model_admin, request, f"Delete {name}", name=name, size=size,
    ))


class PruneForm(forms.Form):
    """The rules of backup_prune; the help text is the unit the page writes after a count."""

    keep_last = forms.IntegerField(min_value=0, max_value=10_000, label="Keep the newest")
    keep_daily = forms.IntegerField(min_value=0, max_value=10_000, label="Keep one a day for", help_text="days")
    keep_weekly = forms.IntegerField(min_value=0, max_value=10_000, label="Keep one a week for", help_text="weeks")
    keep_monthly = forms.IntegerField(min_value=0, max_value=10_000, label="Keep one a month for",
                                      help_text="months")
    keep_safety = forms.IntegerField(min_value=0, max_value=10_000, label="Keep the newest safety backups")
    # Not required: a link or bookmark from before tenant backups had a rule of their own keeps the setting's count.
    keep_tenant = forms.IntegerField(min_value=0, max_value=10_000, required=False,
                                     label="Keep the newest backups of chosen tenants")


def _prune_defaults() -> dict[str, int]:
    return {"keep_last": backup_settings.KEEP_LAST, "keep_daily": backup_settings.KEEP_DAILY,
            "keep_weekly": backup_settings.KEEP_WEEKLY, "keep_monthly": backup_settings.KEEP_MONTHLY,
            "keep_safety": backup_settings.KEEP_SAFETY, "keep_tenant": backup_settings.KEEP_TENANT}


@require_http_methods(["GET", "POST"])
def prune(request: HttpRequest, model_admin: ModelAdmin[BackupFile]) -> HttpResponse:
    """Retention from the page: a dry-run preview of what goes, then a confirmation that applies it."""
    require(request, "delete")
    initial = _prune_defaults()
    form = PruneForm(request.POST or request.GET or None, initial=initial)
    policy: dict[str, int] | None
    if form.is_bound and not form.is_valid():
        policy = None
    elif form.is_bound:
        policy = {k: initial[k] if v is None else int(v) for k, v in form.cleaned_data.items()}
    else:
        policy = initial
    result = None
    if policy is not None:
        confirmed = request.method == "POST" and request.POST.get("confirm") == "yes"
        try:
            with history.origin(admin_origin(request)):
                result = services.backup_prune(dry_run=not confirmed, database=chosen_database(request), **policy)
        except BackupError as exc:
            messages.error(request, f"Nothing was pruned: {browser_message(exc)}")
            return HttpResponseRedirect(url(request, "prune"))
        job_id = history.last_recorded()
        if confirmed:
            log_action(request, job_id, f"Pruned {len(result.removed)} backups")
            messages.success(request, f"{len(result.removed)} backup{'s' if len(result.removed) != 1 else ''} "
                                      f"removed, {format_size(result.freed_bytes)} freed.")
            return HttpResponseRedirect(url(request, "changelist"))
    return TemplateResponse(request, "admin/adcp_backup/prune.html", context(
        model_admin, request, "Prune backups", form=form, result=result, policy=policy,
    ))


@csrf_exempt  # the upload handlers must be set before anything reads the body; CSRF is checked just below
def upload(request: HttpRequest, model_admin: ModelAdmin[BackupFile]) -> HttpResponse:
    require(request, "upload")
    limit = backup_settings.UPLOAD_MAX_SIZE
    if request.method == "POST":
        refusal = uploads.prepare(request, limit=limit)
        if refusal:
            messages.error(request, refusal)
            return HttpResponseRedirect(url(request, "upload"))
    response = _upload_checked(request, model_admin, limit)
    if request.method == "POST" and response.status_code == 403:  # refused by the CSRF check: keep nothing
        uploads.discard_received(request)
    return response


@csrf_protect
@require_http_methods(["GET", "POST"])
def _upload_checked(request: HttpRequest, model_admin: ModelAdmin[BackupFile], limit: int) -> HttpResponse:
    if request.method == "POST":
        quarantined, refusal = uploads.collect(request, field="file", limit=limit)
        if quarantined is None:
            messages.error(request, refusal or "Nothing was received.")
            return HttpResponseRedirect(url(request, "upload"))
        name = uploads.generated_name(quarantined.original_name)
        options = {"original_name": quarantined.original_name[:255], "size": quarantined.size,
                   "quarantine": str(quarantined.path)}
        note = f"Uploaded {quarantined.original_name[:100]} as {name}"
        try:
            job = jobs.start_job(kind=BackupJob.Kind.UPLOAD, backup_name=name, options=options,
                                 user=request.user, remote_addr=client_address(request),
                                 database=chosen_database(request),
                                 recorded=lambda job: log_action(request, job.pk, note))
        except BackupError as exc:
            quarantined.discard()
            messages.error(request, browser_message(exc))
            return HttpResponseRedirect(url(request, "upload"))
        return HttpResponseRedirect(url(request, "job", job.pk))
    return TemplateResponse(request, "admin/adcp_backup/upload.html", context(
        model_admin, request, "Upload a backup", form=UploadForm(), limit=format_size(limit),
    ))


# -- jobs ------------------------------------------------------------------------------------------------
@require_GET
def job_detail(request: HttpRequest, model_admin: ModelAdmin[BackupFile], job_id: int) -> HttpResponse:
    require(request, "view")
    job = get_object_or_404(BackupJob.objects.select_related("user"), pk=job_id)
    if job.status in jobs.ACTIVE:
        reason = history.stale_reason(job)
        if reason and history.mark_failed(job.pk, reason):
            job.refresh_from_db()
    result = job.result or {}
    problems = result.get("problems") or []
    in_storage = False
    if job.backup_name and job.status == BackupJob.Status.SUCCEEDED and job.kind not in ("delete", "restore"):
        try:
            in_storage = BackupStorage().exists(job.backup_name)
        except BackupError:
            in_storage = False
    title = f"{BackupJob.Kind(job.kind).label}{' (dry run)' if job.dry_run else ''} job {job.pk}"
    return TemplateResponse(request, "admin/adcp_backup/job_detail.html", context(
        model_admin, request, title,
        job=job, progress=jobs.progress_of(job), result=result, problems=problems,
        in_storage=in_storage, active=job.status in jobs.ACTIVE,
        counts=_counts_table(result), changes=result.get("changes") or {},
        can_mark_failed=can_end_jobs(request) and job.status in jobs.ACTIVE,
        error=for_browser(job.error) if job.error else "",
    ))


@require_POST
def job_mark_failed(request: HttpRequest, model_admin: ModelAdmin[BackupFile], job_id: int) -> HttpResponse:
    """Staff with the restore permission can end a job that is stuck; its runner, if alive, ends unrecorded."""
    if not can_end_jobs(request):
        raise PermissionDenied
    job = get_object_or_404(BackupJob, pk=job_id)
    if history.mark_failed(job.pk, f"Marked failed by {request.user} from the admin."):
        log_action(request, job.pk, "Marked failed")
        messages.success(request, f"Job {job.pk} was marked failed; it no longer blocks other jobs.")
    elif BackupJob.objects.filter(pk=job.pk, status__in=jobs.ACTIVE).exists():
        messages.error(request, f"Job {job.pk} could not be marked now: the database is busy. Try again in a moment.")
    else:
        messages.info(request, f"Job {job.pk} had already finished.")
    return HttpResponseRedirect(url(request, "job", job.pk))


@require_GET
def job_progress(request: HttpRequest, model_admin: ModelAdmin[BackupFile], job_id: int) -> JsonResponse:
    require(request, "view")
    job = get_object_or_404(BackupJob, pk=job_id)
    data = jobs.progress_of(job).as_dict()
    data.update(kind=job.kind, backup_name=job.backup_name, error=job.error, url=url(request, "job", job.pk))
    return JsonResponse(data)


def _counts_table(result: dict[str, Any]) -> list[dict[str, Any]]:
    counts = result.get("counts") or result.get("restored") or {}
    checksums = result.get("checksums") or {}
    return [{"table": t, "rows": n, "sha256": checksums.get(t)} for t, n in counts.items()]
