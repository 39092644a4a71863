"""backup_validate: check a backup file from end to end without touching the database."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from ... import services
from ...db.limits import ENGINES
from ..base import EXIT_INVALID, BackupCommand, format_counts, provenance_text


class Command(BackupCommand):
    help = "Validate a backup file: structure, checksums, counts, types, unique and foreign keys."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="A path, a name in the backup storage, or 'latest'.")
        super().add_arguments(parser)
        self.add_identity_argument(parser)
        parser.add_argument("--target-engine", choices=ENGINES,
                            help="Also find every value this engine would refuse (mysql: MariaDB/MySQL), by the "
                                 "columns of --database when it is that engine, else by the app's schema for it.")

    def handle(self, *args: Any, file: str, identity: str | None, target_engine: str | None, as_json: bool,
               database: str, **options: Any) -> None:
        report = self.run_service(
            lambda: services.backup_validate(file=file, identity=identity, target_engine=target_engine,
                                             database=database, progress=self.progress_reporter(options)),
            as_json=as_json,
        )
        if as_json:
            self.emit_json(report.as_dict())
        elif report.valid:
            self.stdout.write(self.style.SUCCESS(f"{report.name}: valid ({report.format}, {report.compression})"))
            self.stdout.write(f"  rows: {format_counts(report.counts)}")
            self.stdout.write(f"  provenance: {provenance_text(report)}")
            for path in report.withheld_files:
                self.stdout.write(f"  settings file {path}: withheld (it holds secrets; the backup is not encrypted)")
        else:
            self.stdout.write(self.style.ERROR(f"{report.name}: INVALID, {report.problems_total} problem(s)"))
            for problem in report.problems:
                self.stdout.write(f"  - {problem}")
            if report.problems_total > len(report.problems):
                self.stdout.write(f"  ... and {report.problems_total - len(report.problems)} more")
            self.stdout.write(f"  provenance: {provenance_text(report)}")
        if not report.valid:
            raise CommandError(f"{report.name} is not a valid backup.", returncode=EXIT_INVALID)
