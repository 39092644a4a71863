"""backup_prune: remove old backups by restic's retention rules; --dry-run only lists them."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from ... import results, retention, services
from ..base import BackupCommand, format_size


def count(text: str) -> int:
    if text == "unlimited":
        return -1
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


class Command(BackupCommand):
    help = ("Remove backups the retention rules do not keep (restic's --keep-* rules, by each backup's creation "
            "time). Unreadable files, files that are not backups and the newest valid backup are never removed.")

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        for rule, what in (("last", "the newest N backups"),
                           ("daily", "the newest backup of each of the last N days that have one"),
                           ("weekly", "the newest backup of each of the last N ISO weeks that have one"),
                           ("monthly", "the newest backup of each of the last N months that have one")):
            parser.add_argument(f"--keep-{rule}", type=count, metavar="N",
                                help=f"Keep {what}; 'unlimited' for all. As with restic, once any of --keep-last, "
                                     "--keep-daily, --keep-weekly and --keep-monthly is given, only those given "
                                     f"apply; with none, ADCP_BACKUP_KEEP_{rule.upper()} does.")
        parser.add_argument("--keep-safety", type=count, metavar="N",
                            help="Keep the newest N safety backups taken before restores "
                                 "(default: ADCP_BACKUP_KEEP_SAFETY; it leaves the other rules as they are).")
        parser.add_argument("--dry-run", action="store_true", help="List what would be removed; remove nothing.")

    def handle(self, *args: Any, keep_last: int | None, keep_daily: int | None, keep_weekly: int | None,
               keep_monthly: int | None, keep_safety: int | None, dry_run: bool, as_json: bool, database: str,
               **options: Any) -> None:
        result = self.run_service(
            lambda: services.backup_prune(keep_last=keep_last, keep_daily=keep_daily, keep_weekly=keep_weekly,
                                          keep_monthly=keep_monthly, keep_safety=keep_safety, dry_run=dry_run,
                                          database=database),
            as_json=as_json,
        )
        if as_json:
            self.emit_json(result.as_dict())
            return
        policy = ", ".join(f"{k.replace('_', '-')} {'unlimited' if v < 0 else v}" for k, v in result.policy.items())
        source = ("the --keep-* flags given; the rules not given keep nothing"
                  if result.policy_source == results.POLICY_FROM_FLAGS
                  else "the ADCP_BACKUP_KEEP_* settings, as no --keep-* flag was given")
        self.stdout.write(f"Policy from {source}: {policy}")
        self._section("Keep", result.kept)
        self._section("Would remove" if dry_run else "Removed", result.removed)
        self._section("Left alone", result.skipped)
        for note in result.notes:
            self.stdout.write(f"note: {note}")
        verb = "would free" if dry_run else "freed"
        self.stdout.write(self.style.SUCCESS(
            f"{len(result.removed)} backup(s) {'to remove' if dry_run else 'removed'}, {verb} "
            f"{format_size(result.freed_bytes)}; {len(result.kept)} kept." + (" (dry run)" if dry_run else "")))

    def _section(self, title: str, files: list[retention.PrunedFile]) -> None:
        self.stdout.write(f"{title}: {len(files)}")
        for pruned in files:
            self.stdout.write(f"  {pruned.name}  {pruned.created_at or '?'}  {'; '.join(pruned.reasons)}")
