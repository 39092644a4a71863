"""backup_info: the database, the storage and the newest backup; exit 1 when it is too old."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from ... import services
from ...schedules import parse_duration
from ..base import EXIT_FAILED, BackupCommand, format_size


class Command(BackupCommand):
    help = "Show the backup system's state; with --max-age, exit 1 when the newest backup is older."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--max-age", metavar="DURATION",
                            help="Exit 1 when the newest backup is older than this (26h, 2d, 90m...).")
        parser.add_argument("--max-drill-age", metavar="DURATION",
                            help="Exit 1 when no restore drill succeeded within this time (8d, 1w...).")
        self.add_identity_argument(parser)

    def handle(self, *args: Any, database: str, max_age: str | None, identity: str | None, as_json: bool,
               max_drill_age: str | None = None, **options: Any) -> None:
        try:
            limit = parse_duration(max_age) if max_age else None
            drill_limit = parse_duration(max_drill_age) if max_drill_age else None
        except ValueError as exc:
            raise CommandError(str(exc), returncode=EXIT_FAILED) from exc
        info = self.run_service(lambda: services.backup_info(database=database, max_age=limit, identity=identity,
                                                             max_drill_age=drill_limit),
                                as_json=as_json)
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
                              + (f", {len(b['unreadable'])} unreadable file(s)" if b["unreadable"] else "")
                              + (f"; {b['other_databases']} of other databases in the same storage"
                                 if b["other_databases"] else ""))
            for other in b["untrusted"]:
                why = "dated in the future" if other["future_dated"] else (
                    "uploaded" if other["uploaded"] else other["provenance"])
                self.stdout.write(f"  ignored (not this installation's own backup: {why}): {other['name']}")
            if info.newest:
                hours = info.newest["age_seconds"] / 3600
                self.stdout.write(f"Newest: {info.newest['name']} ({info.newest['created_at']}, {hours:.1f} h old, "
                                  "signed here)")
            else:
                self.stdout.write("Newest: none")
            for partial in b["partial_files"]:
                self.stdout.write(f"Partial file of an interrupted backup: {partial['path']} "
                                  f"({format_size(partial['size'])}, {partial['age_seconds'] / 3600:.1f} h old; "
                                  "backup_prune removes it after a day)")
            s = info.settings
            safety = "on" if s["safety_backup"] else "off"
            self.stdout.write(f"Compression: {s['compression']}; safety backups: {safety}")
            self.describe_operations(s)
            self.describe_drill(info.drill or {})
        failures = []
        if info.stale:
            what = "no backup" if info.newest is None else f"the newest backup is older than {max_age}"
            failures.append(f"Backups are stale: {what}.")
        if info.drill and info.drill.get("stale"):
            failures.append(f"No restore drill succeeded in the last {max_drill_age}.")
        if failures:
            raise CommandError(" ".join(failures), returncode=EXIT_FAILED)

    def describe_drill(self, drill: dict[str, Any]) -> None:
        for key, label in (("last", "Last drill"), ("last_success", "Last successful drill")):
            entry = drill.get(key)
            if entry is None:
                self.stdout.write(f"{label}: none")
                continue
            if entry.get("restorable"):
                verdict = f"restorable, restore {entry.get('restore_seconds', 0):.2f} s"
            else:
                verdict = "NOT restorable: " + "; ".join(entry.get("problems") or [entry.get("error") or "?"])[:300]
            self.stdout.write(f"{label}: {entry.get('name')} at {entry.get('finished_at')} ({verdict})")

    def describe_operations(self, s: dict[str, Any]) -> None:
        schedule = s["schedule"]
        for key in ("backup", "prune", "drill"):
            entry = schedule[key]
            self.stdout.write(f"Schedule ({key}): {entry.get('description') or entry.get('error')}")
        broker = "configured" if schedule["celery_broker"] else "not configured (use cron or a systemd timer)"
        self.stdout.write(f"Celery broker: {broker}; e-mail admins on failure: "
                          f"{'on' if schedule['notify_admins'] else 'off'} ({schedule['admins']} admin(s))")
        r = s["retention"]
        self.stdout.write(f"Retention: last {r['keep_last']}, daily {r['keep_daily']}, weekly {r['keep_weekly']}, "
                          f"monthly {r['keep_monthly']}; safety backups {r['keep_safety']}")
        enc = s["encryption"]
        shown = ", ".join(f"{k}={v}" for k, v in enc["settings"].items()) or "no encryption settings"
        self.stdout.write(f"Encryption: {shown}; {enc['encrypted_backups']} encrypted backup(s)")
        held = s["lock"]["held_by"]
        self.stdout.write("Running now: " + ("nothing" if held is None else
                                             f"{held['kind']} (process {held['pid']} on {held['host']}, "
                                             f"since {held['since']})"))
