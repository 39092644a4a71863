"""backup_list: the backups in the storage, newest first, described from their headers."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from ... import origin, services, signing
from ..base import BackupCommand, format_counts, format_size, provenance_text


class Command(BackupCommand):
    help = "List the backups in the backup storage, newest first."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--limit", type=int, default=None, metavar="N", help="Show at most N backups.")
        parser.add_argument("--all-databases", action="store_true",
                            help="List the backups of every database in the storage, not only --database's.")
        self.add_identity_argument(parser)

    def handle(self, *args: Any, limit: int | None, identity: str | None, as_json: bool, database: str,
               all_databases: bool, **options: Any) -> None:
        if limit is not None and limit < 1:
            limit = None
        entries = self.run_service(
            lambda: services.backup_list(limit=limit, identity=identity,
                                         database=None if all_databases else database), as_json=as_json)
        if as_json:
            self.emit_json({"database": None if all_databases else database,
                            "backups": [e.as_dict() for e in entries]})
            return
        if not entries:
            self.stdout.write("No backups." if all_databases else
                              f"No backups of the database {database!r} (--all-databases lists every one).")
            return
        rows = [["NAME", "CREATED (UTC)", "SIZE", "FORMAT", "COMPRESSION", "PROVENANCE", "ROWS", "SOURCE"]]
        notes: list[str] = []
        for e in entries:
            created = e.created.strftime("%Y-%m-%d %H:%M:%S") if e.created else "?"
            if e.future_dated:
                created += " (FUTURE)"
            if e.error:
                rows.append([e.name, created, format_size(e.size), "unreadable", "-", "-", e.error, "-"])
                continue
            kind = e.format + (" (safety)" if e.purpose == "safety" else "")
            counts = "encrypted" if e.encrypted and e.counts is None else format_counts(e.counts)
            provenance = ("uploaded, " if e.uploaded else "") + signing.LABELS.get(e.provenance, e.provenance)
            rows.append([e.name, created, format_size(e.size), kind, e.compression or "-", provenance, counts,
                         origin.describe_source(e.source)])
            if not e.trusted:
                notes.append(f"{e.name}: {provenance_text(e)}")
        for line in self.table_lines(rows):
            self.stdout.write(line)
        if notes:
            self.stdout.write("Not this installation's own (never taken as latest, counted by monitoring or pruned):")
            for note in notes:
                self.stdout.write(f"  {note}")
