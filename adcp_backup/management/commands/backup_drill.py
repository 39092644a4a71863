"""backup_drill: restore a backup into a scratch database, read it back, compare; the live data is untouched."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from ... import services
from ..base import EXIT_FAILED, EXIT_INVALID, BackupCommand, format_size


class Command(BackupCommand):
    help = ("Restore drill: restore a backup (default: the newest) into a scratch database of the same engine, "
            "compare it with the file, remove it. Exit 0 restorable, 2 not restorable, 1 the drill could not run.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", default="latest",
                            help="A path, a name in the backup storage, or 'latest' (the default).")
        super().add_arguments(parser)
        self.add_identity_argument(parser)

    def handle(self, *args: Any, file: str, database: str, as_json: bool, identity: str | None = None,
               **options: Any) -> None:
        progress = self.progress_reporter(options)
        try:
            result = self.run_service(lambda: services.backup_drill(file=file, database=database, identity=identity,
                                                                    progress=progress), as_json=as_json)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the scratch database was removed on the way out
            raise CommandError("The drill was interrupted; its scratch database was removed.",
                               returncode=EXIT_FAILED) from exc
        if as_json:
            self.emit_json(result.as_dict())
        else:
            scratch = result.scratch
            self.stdout.write(f"Drill of {result.name} ({result.format}) in a scratch {result.engine} "
                              f"{scratch['kind']} ({scratch['name']}, removed)")
            for table, check in result.tables.items():
                checksum = (check.checksum_restored or "-")[:16]
                verdict = "ok" if check.matches else "DIFFERS"
                self.stdout.write(f"  {table:<20} {check.rows_restored:>10,} rows  sha256 {checksum}…  "
                                  f"{check.compared} {verdict}")
            checks = ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in result.checks.items() if v is not None)
            self.stdout.write(f"Checks: {checks}")
            self.stdout.write(f"Restore time: {result.restore_seconds:.2f} s; read back and compared in "
                              f"{result.verify_seconds:.2f} s; the whole drill {result.duration:.2f} s "
                              f"({result.scratch_seconds:.2f} s creating and removing the scratch database); "
                              f"peak memory {format_size(result.peak_memory_bytes)}")
            for removed in result.leftovers_removed:
                self.stdout.write(f"Removed a killed drill's leftover: {removed}")
            for note in result.notes:
                self.stdout.write(f"Note: {note}")
            for problem in result.problems:
                self.stdout.write(f"  - {problem}")
            if result.restorable:
                self.stdout.write(self.style.SUCCESS(f"{result.name} restores."))
        if not result.restorable:
            first = result.problems[0] if result.problems else "unknown problem"
            raise CommandError(f"{result.name} does not restore: {first}", returncode=EXIT_INVALID)
