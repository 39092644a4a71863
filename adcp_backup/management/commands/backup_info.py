"""backup_info: the database, the storage and the newest backup; exit 1 when it is too old."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError, CommandParser

from ... import services
from ..base import EXIT_FAILED, BackupCommand, format_size

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'26h', '90m', '2d', '1w', '3600' (seconds), or combinations such as '1d12h'."""
    text = text.strip().lower()
    if text.isdigit():
        return timedelta(seconds=int(text))
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 26h, 90m, 2d or 1w")
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


class Command(BackupCommand):
    help = "Show the backup system's state; with --max-age, exit 1 when the newest backup is older."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--max-age", metavar="DURATION",
                            help="Exit 1 when the newest backup is older than this (26h, 2d, 90m...).")

    def handle(self, *args: Any, database: str, max_age: str | None, as_json: bool, **options: Any) -> None:
        try:
            limit = parse_duration(max_age) if max_age else None
        except ValueError as exc:
            raise CommandError(str(exc), returncode=EXIT_FAILED) from exc
        info = self.run_service(lambda: services.backup_info(database=database, max_age=limit), as_json=as_json)
        if as_json:
            self.emit_json(info.as_dict())
        else:
            db = info.database
            self.stdout.write(f"Database: {db['alias']} ({db['engine']}) {db['name']}")
            for table, count in db["tables"].items():
                self.stdout.write(f"  {table:<20} {'missing' if count is None else f'{count:,} rows'}")
            st = info.storage
            free = format_size(st["free_bytes"]) if st["free_bytes"] is not None else "unknown"
            self.stdout.write(f"Storage: {st['location']} (free: {free})")
            b = info.backups
            self.stdout.write(f"Backups: {b['count']} ({format_size(b['total_size'])})"
                              + (f", {len(b['unreadable'])} unreadable file(s)" if b["unreadable"] else ""))
            if info.newest:
                hours = info.newest["age_seconds"] / 3600
                self.stdout.write(f"Newest: {info.newest['name']} ({info.newest['created_at']}, {hours:.1f} h old)")
            else:
                self.stdout.write("Newest: none")
            s = info.settings
            self.stdout.write(f"Compression: {s['compression']}; safety backups: {'on' if s['safety_backup'] else 'off'}")
        if info.stale:
            what = "no backup" if info.newest is None else f"the newest backup is older than {max_age}"
            raise CommandError(f"Backups are stale: {what}.", returncode=EXIT_FAILED)
