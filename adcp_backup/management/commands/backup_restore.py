"""backup_restore: replace the AdCP data with a backup's, atomically, after asking."""
from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser

from ... import results, services
from ..base import EXIT_FAILED, EXIT_INVALID, BackupCommand, format_counts, provenance_text


class Command(BackupCommand):
    help = "Restore a backup into the database (one transaction: all of it or nothing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="A path, a name in the backup storage, or 'latest'.")
        super().add_arguments(parser)
        parser.add_argument("--force", "--no-input", action="store_true", dest="force",
                            help="Do not ask for confirmation.")
        parser.add_argument("--skip-validation", action="store_true",
                            help="Leave NOT NULL to the database's constraints; every other check still applies.")
        parser.add_argument("--validate-only", action="store_true", help="Only validate the file.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Do the whole restore, report what would change, then roll it back.")
        parser.add_argument("--no-safety-backup", action="store_true",
                            help="Do not back up the current data first.")
        parser.add_argument("--create-schema", action="store_true",
                            help="Create the AdCP tables when the database has none of them.")
        parser.add_argument("--tenant", action="append", dest="tenants", metavar="SLUG",
                            help="Replace only this tenant's rows (repeatable); other tenants stay as they are.")
        parser.add_argument("--from-other-database", action="store_true",
                            help="Allow restoring a backup that was taken from another database than --database.")
        self.add_identity_argument(parser)
        parser.add_argument("--allow-unsigned", action="store_true",
                            help="Restore a file this installation did not sign (uploaded, from elsewhere, legacy).")

    def handle(self, *args: Any, file: str, force: bool, skip_validation: bool, validate_only: bool,
               dry_run: bool, no_safety_backup: bool, create_schema: bool, as_json: bool, database: str,
               tenants: list[str] | None = None, identity: str | None = None, from_other_database: bool = False,
               allow_unsigned: bool = False,
               **options: Any) -> None:
        progress = self.progress_reporter(options)
        if validate_only:
            report = self.run_service(
                lambda: services.backup_validate(file=file, identity=identity, progress=progress, database=database),
                as_json=as_json)
            if as_json:
                self.emit_json(report.as_dict())
            elif report.valid:
                self.stdout.write(self.style.SUCCESS(f"{report.name}: valid, {provenance_text(report)}; "
                                                     "nothing was restored."))
            else:
                for problem in report.problems:
                    self.stdout.write(f"  - {problem}")
            if not report.valid:
                raise CommandError(f"{report.name} is not a valid backup.", returncode=EXIT_INVALID)
            return

        if not force and not dry_run:
            plan = self.run_service(lambda: services.backup_restore_plan(
                file=file, database=database, tenants=tenants, identity=identity,
                from_other_database=from_other_database), as_json=as_json)
            self.confirm(plan, options.get("stdin") or sys.stdin, as_json=as_json)

        result = self.run_service(
            lambda: services.backup_restore(
                file=file, database=database, skip_validation=skip_validation, dry_run=dry_run,
                create_schema=create_schema, safety_backup=False if no_safety_backup else None, tenants=tenants,
                identity=identity, allow_unsigned=allow_unsigned, progress=progress,
                from_other_database=from_other_database,
            ),
            as_json=as_json,
        )
        if as_json:
            self.emit_json(result.as_dict())
            return
        title = "Dry run (rolled back, nothing changed)" if result.dry_run else "Restored"
        self.stdout.write(self.style.SUCCESS(f"{title}: {result.name} ({result.format})"))
        if result.origin:
            self.stdout.write(f"  taken from: {_origin_line(result.origin)}")
        rows = [["TABLE", "BEFORE", "AFTER", "ADDED", "REMOVED", "CHANGED"]]
        for table, change in result.changes.items():
            rows.append([table, change.before, change.after, _n(change.added), _n(change.removed), _n(change.changed)])
        for line in self.table_lines(rows):
            self.stdout.write("  " + line)
        for table, columns in result.defaulted.items():
            self.stdout.write(f"  {table}: not in the backup, set to defaults: {', '.join(columns)}")
        for entry in result.files:
            self.stdout.write(f"  settings file {entry['path']}: {entry['action']}")
        if result.environment.get("variables"):
            self.stdout.write("  environment variables in the backup (reported, not applied):")
            for name, value in result.environment["variables"].items():
                self.stdout.write(f"    {name}={value}")
        for note in result.notes:
            self.stdout.write(f"  note: {note}")
        if result.safety_backup:
            self.stdout.write(f"  safety backup of the previous data: {result.safety_backup}")

    def confirm(self, plan: results.RestorePlan, stdin: Any, *, as_json: bool) -> None:
        err = self.stderr
        err.write(f"Restoring {plan.name} ({plan.format}, created {plan.created_at or 'at an unknown time'}, "
                  f"{plan.provenance_label})")
        if plan.origin:
            err.write(f"taken from: {_origin_line(plan.origin)}")
        current = {k: v for k, v in plan.current_counts.items() if v is not None}
        err.write(f"into database tables that now hold: {format_counts(current)}")
        err.write(f"The backup holds: {format_counts({k: v for k, v in plan.file_counts.items() if v is not None})}")
        if isinstance(plan.scope.get("tenants"), list):
            err.write(f"Only the rows of the tenants {', '.join(plan.scope['tenants'])} (tenant, products, "
                      "embeddings) will be replaced; other tenants are left as they are.")
            if plan.scope.get("global"):
                err.write(f"Also replaced, as the tenant backup holds them: {', '.join(plan.scope['global'])}.")
        else:
            err.write("Every row of these tables will be replaced, and the settings files overwritten.")
        if not getattr(stdin, "isatty", lambda: False)():
            raise self.fail_plain("Refusing to restore without confirmation: no terminal to ask. "
                                  "Pass --force (or --no-input) to restore anyway.", as_json=as_json)
        err.write("Type 'yes' to continue, anything else to cancel: ", ending="")
        err.flush()
        answer = stdin.readline().strip()
        if answer != "yes":
            raise self.fail_plain("Restore cancelled; nothing was changed.", as_json=as_json)

    def fail_plain(self, message: str, *, as_json: bool) -> CommandError:
        if as_json:
            self.emit_json({"error": message, "type": "Cancelled"})
        return CommandError(message, returncode=EXIT_FAILED)


def _origin_line(came_from: dict[str, Any]) -> str:
    other = " -- ANOTHER database than this one (--from-other-database)" if came_from.get("other_database") else ""
    return f"{came_from['description']}{other}"


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
