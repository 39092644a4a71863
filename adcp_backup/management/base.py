"""What every backup command shares: --database, --json, progress on stderr, errors as exit codes."""
from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser

from .. import history
from ..conf import backup_settings
from ..display import format_size  # noqa: F401  (the commands import it from here)
from ..exceptions import BackupError, BackupNotFound, InvalidBackup, SettingsFilesNotWritten, TenantConflict
from ..interrupts import describe, signals_interrupt
from ..models import BackupJob
from ..progress import ProgressCallback, TerminalProgress, silent

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_FILES_NOT_WRITTEN = 3  # backup_restore: the database WAS restored, some settings files were not written
M_TOP_PAD = -2  # glibc's mallopt parameter


def keep_freed_memory_for_reuse(pad: int = 16 << 20) -> None:
    """glibc gives memory freed at the top of the heap back to the system at once. Streaming frees and takes
    back a few megabytes per batch, so every batch faulted its pages in again: a third of a backup's time.
    A 16 MiB pad keeps them. Only the commands do this, as they own their process; elsewhere (no glibc)
    nothing changes."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_TOP_PAD, pad)
    except (OSError, AttributeError):
        pass


def command_origin() -> history.Origin:
    """A command typed at a terminal, or one run without a terminal (cron, systemd, a script)."""
    interactive = sys.stdin is not None and sys.stdin.isatty()
    return history.Origin(BackupJob.Origin.COMMAND if interactive else BackupJob.Origin.CRON, history.process_actor())


class BackupCommand(BaseCommand):
    stealth_options = ("stdin",)
    # This app's own checks, not the whole project's: those import every URLconf and with it the admin's views
    # and Celery, a quarter of a second before a command could start. `manage.py check` runs them all.
    requires_system_checks = ["adcp_backup"]

    def execute(self, *args: Any, **options: Any) -> Any:
        keep_freed_memory_for_reuse()
        if not options.get("database"):
            try:
                options["database"] = backup_settings.default_database
            except BackupError as exc:
                raise CommandError(str(exc), returncode=EXIT_FAILED) from exc
        try:
            with signals_interrupt(), history.origin(command_origin()):
                return super().execute(*args, **options)
        except KeyboardInterrupt as exc:  # SIGINT, and SIGTERM/SIGHUP through signals_interrupt
            raise CommandError(f"{describe(exc)}: stopped; temporary files were removed, nothing half-written was "
                               "kept and the lock was released.", returncode=EXIT_FAILED) from exc

    def add_arguments(self, parser: CommandParser) -> None:
        # Every command takes --database, as operators' scripts pass it to all of them alike.
        parser.add_argument("--database", default=None,
                            help="Database alias (default: the first of ADCP_BACKUP_DATABASES, 'default').")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="Print one JSON object on stdout and nothing else there.")

    @staticmethod
    def add_identity_argument(parser: CommandParser) -> None:
        """--identity, for the commands that read encrypted backups."""
        parser.add_argument("--identity", metavar="PATH",
                            help="age identity file that decrypts encrypted backups "
                                 "(default: ADCP_BACKUP_AGE_IDENTITY).")

    def progress_reporter(self, options: dict[str, Any]) -> ProgressCallback:
        if options.get("verbosity", 1) < 1:
            return silent
        stream = getattr(self.stderr, "_out", sys.stderr)
        return TerminalProgress(stream, interval=backup_settings.PROGRESS_INTERVAL)

    def emit_json(self, data: Any) -> None:
        self.stdout.write(orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode())

    def fail(self, exc: BackupError, *, as_json: bool, extra: dict[str, Any] | None = None) -> CommandError:
        code = EXIT_INVALID if isinstance(exc, InvalidBackup) else EXIT_FAILED
        if isinstance(exc, SettingsFilesNotWritten):
            code = EXIT_FILES_NOT_WRITTEN
        if as_json:
            payload: dict[str, Any] = {"error": str(exc), "type": type(exc).__name__, **(extra or {})}
            if isinstance(exc, InvalidBackup):
                payload["problems"] = [p.as_dict() for p in exc.problems]
                payload["problems_total"] = exc.total
            if isinstance(exc, SettingsFilesNotWritten):
                payload.update(database_restored=True, restored=exc.restored, files=exc.files,
                               files_not_written=exc.failed)
            if isinstance(exc, TenantConflict):
                payload["conflicts"] = [c.as_dict() for c in exc.conflicts]
            self.emit_json(payload)
        return CommandError(str(exc), returncode=code)

    def run_service(self, call: Callable[[], Any], *, as_json: bool) -> Any:
        try:
            return call()
        except BackupNotFound as exc:
            raise self.fail(exc, as_json=as_json) from exc
        except BackupError as exc:
            raise self.fail(exc, as_json=as_json) from exc

    def table_lines(self, rows: list[list[str]]) -> list[str]:
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        return ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]


def format_counts(counts: dict[str, int] | None) -> str:
    if not counts:
        return "-"
    return ", ".join(f"{k} {'?' if v is None else f'{v:,}'}" for k, v in counts.items())


def provenance_text(item: Any) -> str:
    """A backup's provenance in words, with why when it is not this installation's own, and a future date."""
    from .. import signing

    label = signing.LABELS.get(item.provenance, item.provenance)
    if getattr(item, "uploaded", False):
        label = f"uploaded, {label}"
    text = label if item.provenance == signing.SIGNED or not item.provenance_note else \
        f"{label}: {item.provenance_note}"
    if getattr(item, "future_dated", False):
        text += "; CREATED IN THE FUTURE (a wrong clock or a forgery): ignored by latest, monitoring and retention"
    return text
