#!/usr/bin/env python
"""The legacy backup script's command line (create, restore, list, validate, info) over adcp-backup's commands.

Existing cron lines keep working: each subcommand and option of the legacy script is translated to the
matching management command, which calls the same services, prints the same output and exits with the
same codes (0 done; 1 failed or refused; 2 invalid backup file).

    python scripts/backup_cli.py create [--compress] [--output PATH]
    python scripts/backup_cli.py restore FILE [--force] [--skip-validation] [--validate-only] [--allow-unsigned]
    python scripts/backup_cli.py list [--limit N]
    python scripts/backup_cli.py validate FILE
    python scripts/backup_cli.py info
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backup_cli.py",
        description="Backup and restore of the AdCP data (the legacy command line, run by adcp-backup).",
    )
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of text.")
    commands = parser.add_subparsers(dest="command", metavar="{create,restore,list,validate,info}")
    commands.required = True

    create = commands.add_parser("create", help="Create a backup.")
    create.add_argument("--compress", action="store_true", help="Compress with gzip.")
    create.add_argument("--output", metavar="PATH", help="Write the backup to this file or folder.")

    restore = commands.add_parser("restore", help="Restore a backup.")
    restore.add_argument("file", help="A path, a name in the backup storage, or 'latest'.")
    restore.add_argument("--force", action="store_true", help="Do not ask for confirmation.")
    restore.add_argument("--skip-validation", action="store_true", help="Skip the row checks before restoring.")
    restore.add_argument("--validate-only", action="store_true", help="Only validate the file.")
    restore.add_argument("--allow-unsigned", action="store_true",
                         help="Restore a file this installation did not sign (legacy files included).")

    listing = commands.add_parser("list", help="List the backups, newest first.")
    listing.add_argument("--limit", type=int, metavar="N", help="Show at most N backups.")

    validate = commands.add_parser("validate", help="Validate a backup file.")
    validate.add_argument("file", help="A path, a name in the backup storage, or 'latest'.")

    commands.add_parser("info", help="Show the state of the database, the storage and the newest backup.")
    return parser


def management_argv(options: argparse.Namespace) -> list[str]:
    """The management command line that does what the legacy command line asked for."""
    argv: list[str]
    if options.command == "create":
        argv = ["backup_create"]
        if options.compress:
            argv.append("--compress")
        if options.output:
            argv += ["--output", options.output]
    elif options.command == "restore":
        argv = ["backup_restore", options.file]
        if options.force:
            argv.append("--force")
        if options.skip_validation:
            argv.append("--skip-validation")
        if options.validate_only:
            argv.append("--validate-only")
        if options.allow_unsigned:
            argv.append("--allow-unsigned")
    elif options.command == "list":
        argv = ["backup_list"]
        if options.limit is not None:
            argv += ["--limit", str(options.limit)]
    elif options.command == "validate":
        argv = ["backup_validate", options.file]
    else:
        argv = ["backup_info"]
    if options.json:
        argv.append("--json")
    return argv


def main(argv: list[str] | None = None) -> None:
    options = build_parser().parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # run as a file, the script's own folder comes first, not the project
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

    import django
    from django.core.management import execute_from_command_line

    django.setup()
    # Django reports a command's error on stderr and exits with its code; no traceback for a user mistake.
    execute_from_command_line(["backup_cli.py", *management_argv(options)])


if __name__ == "__main__":
    main()
