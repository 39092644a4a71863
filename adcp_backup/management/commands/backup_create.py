"""backup_create: write a new backup of the AdCP tables, settings files and environment."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from ... import services
from ...display import format_size
from ...scope import global_choices
from ..base import BackupCommand, format_counts


class Command(BackupCommand):
    help = "Create a backup of the AdCP database tables, settings files and environment configuration."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--compress", action="store_true", help="Compress with gzip.")
        parser.add_argument("--compression", choices=["none", "gzip", "zstd"],
                            help="Compression (default: ADCP_BACKUP_COMPRESSION).")
        parser.add_argument("--output", metavar="PATH",
                            help="Write to this file or folder instead of the backup storage.")
        parser.add_argument("--no-settings", action="store_true",
                            help="Leave out the settings files and the environment.")
        parser.add_argument("--scheduled", action="store_true",
                            help="Mark the backup as scheduled (cron, systemd): a failure e-mails the admins "
                                 "when ADCP_BACKUP_NOTIFY_ADMINS is on.")
        parser.add_argument("--tenant", action="append", dest="tenants", metavar="SLUG",
                            help="Back up only this tenant (repeatable): its row, products and their embeddings.")
        parser.add_argument("--with-global", action="append", dest="with_global", metavar="PART",
                            help=f"With --tenant, also include {' or '.join(global_choices())} "
                                 "(repeatable or comma-separated; default: none).")
        parser.add_argument("--encrypt", action="store_true", default=None,
                            help="Encrypt with age to ADCP_BACKUP_AGE_RECIPIENTS (default: ADCP_BACKUP_ENCRYPT).")
        parser.add_argument("--include-secrets", action="store_true",
                            help="Keep secret environment values unredacted; only with encryption.")

    def handle(self, *args: Any, compress: bool, compression: str | None, output: str | None,
               no_settings: bool, scheduled: bool, as_json: bool, database: str, tenants: list[str] | None,
               with_global: list[str] | None, encrypt: bool | None, include_secrets: bool, **options: Any) -> None:
        if compression is None and compress:
            compression = "gzip"
        result = self.run_service(
            lambda: services.backup_create(
                database=database, compression=compression, output=output, include_settings=not no_settings,
                purpose="scheduled" if scheduled else "manual", tenants=tenants, with_global=with_global,
                encrypt=encrypt, include_secrets=include_secrets,
                progress=self.progress_reporter(options),
            ),
            as_json=as_json,
        )
        if as_json:
            self.emit_json(result.as_dict())
            return
        self.stdout.write(self.style.SUCCESS(f"Backup written: {result.path or result.name}"))
        encrypted = ", age-encrypted" if result.encrypted else ""
        self.stdout.write(f"  size {format_size(result.size)}, {result.compression}{encrypted}, sha256 {result.sha256}")
        self.stdout.write(f"  rows: {format_counts(result.counts)}")
        for path in result.withheld_files:
            self.stdout.write(f"  settings file {path}: withheld, as it holds secret-looking keys and the backup is "
                              "not encrypted (--encrypt keeps it; a restore leaves the file on disk alone)")
        for note in result.notes:
            self.stdout.write(f"  {note}")
