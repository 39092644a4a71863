"""The AdCP application's tables (unmanaged), the admin's placeholder model and the job record."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import models


class Tenant(models.Model):
    id = models.AutoField(primary_key=True)
    name = models.CharField(max_length=255)
    slug = models.CharField(max_length=100, unique=True)
    custom_prompt = models.TextField(null=True, blank=True)
    web_grounding_prompt = models.TextField(null=True, blank=True)
    enable_web_context = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "tenant"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.slug


class Product(models.Model):
    id = models.AutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.DO_NOTHING, db_column="tenant_id", related_name="products")
    name = models.CharField(max_length=255)
    description = models.TextField(null=True, blank=True)
    price_cpm = models.FloatField()
    delivery_type = models.CharField(max_length=50)
    formats_json = models.TextField(null=True, blank=True)
    targeting_json = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "product"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class ExternalAgent(models.Model):
    id = models.AutoField(primary_key=True)
    name = models.CharField(max_length=255)
    base_url = models.CharField(max_length=500)
    enabled = models.BooleanField(default=True)
    agent_type = models.CharField(max_length=50)
    protocol = models.CharField(max_length=10)
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "externalagent"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class ProductEmbedding(models.Model):
    id = models.AutoField(primary_key=True)
    product = models.ForeignKey(
        Product, on_delete=models.DO_NOTHING, db_column="product_id", related_name="embeddings"
    )
    embedding_text = models.TextField()
    embedding_hash = models.CharField(max_length=64)
    embedding = models.BinaryField()
    provider = models.CharField(max_length=100, null=True, blank=True)
    model = models.CharField(max_length=100, null=True, blank=True)
    dim = models.IntegerField(null=True, blank=True)
    updated_at = models.CharField(max_length=40, null=True, blank=True)
    is_stale = models.IntegerField(null=True, default=0)
    created_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "product_embeddings"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["product", "provider", "model"], name="idx_product_embeddings_version"),
        ]


class NoRows(models.Manager["BackupFile"]):
    """The placeholder's managers: every query is empty and never reaches the database, which has no table for
    it, so Django's own model walks (dumpdata, with or without --all, and the like) pass over it."""

    def get_queryset(self) -> models.QuerySet[BackupFile]:
        return super().get_queryset().none()


class BackupFile(models.Model):
    """Gives the admin its "Backups" entry and permission rows; no table stands behind it."""

    objects = NoRows()

    class Meta:
        managed = False
        base_manager_name = "objects"
        default_permissions = ()
        verbose_name = "backup"
        verbose_name_plural = "backups"
        permissions = [
            ("view_backups", "Can view backups"),
            ("create_backups", "Can create backups"),
            ("validate_backups", "Can validate backups"),
            ("restore_backups", "Can restore backups"),
            ("restore_unsigned_backups", "Can restore unsigned backups"),
            ("download_backups", "Can download backups"),
            ("delete_backups", "Can delete backups"),
            ("upload_backups", "Can upload backups"),
            ("drill_backups", "Can test-restore backups into a scratch database"),
        ]


class BackupJob(models.Model):
    """One backup, restore, validation or prune: who ran it, from where, and how it went."""

    class Kind(models.TextChoices):
        CREATE = "create", "Create"
        RESTORE = "restore", "Restore"
        VALIDATE = "validate", "Validate"
        PRUNE = "prune", "Prune"
        UPLOAD = "upload", "Upload"
        DELETE = "delete", "Delete"
        DOWNLOAD = "download", "Download"
        DRILL = "drill", "Test restore"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        INVALID = "invalid", "Invalid"
        FAILED = "failed", "Failed"

    class Origin(models.TextChoices):
        ADMIN = "admin", "Admin"
        COMMAND = "command", "Command line"
        CRON = "cron", "Cron or script"
        CELERY = "celery", "Celery"
        API = "api", "Python call"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    backup_name = models.CharField(max_length=255, blank=True)
    database = models.CharField(max_length=100, default="default")
    options = models.JSONField(default=dict, blank=True)
    origin = models.CharField(max_length=20, default=Origin.API, choices=Origin.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor = models.CharField(max_length=255, blank=True,
                             help_text="Who ran it outside the admin: the system user and host of the process.")
    runner = models.CharField(max_length=255, blank=True, help_text="The process carrying it out: pid@host.")
    dry_run = models.BooleanField(default=False)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    progress_table = models.CharField(max_length=100, blank=True)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.backup_name or ''} ({self.status})".strip()

    @property
    def duration(self) -> timedelta | None:
        """How long it ran: to its end, or so far while it runs."""
        start = self.started_at or self.created_at
        if start is None:
            return None
        return (self.finished_at or datetime.now(UTC)) - start

    @property
    def who(self) -> str:
        return str(self.user) if self.user_id else (self.actor or self.get_origin_display())
