"""E-mail to the site's ADMINS when a scheduled backup or a restore drill fails (ADCP_BACKUP_NOTIFY_ADMINS)."""
from __future__ import annotations

import logging
import platform
from datetime import UTC, datetime
from typing import Any

from django.core.mail import mail_admins

from .conf import backup_settings
from .settings_files import redact_url

logger = logging.getLogger(__name__)

SCHEDULED = "scheduled"


def mail_admins_on_scheduled_failure(sender: Any, *, arguments: dict[str, Any], exception: BaseException,
                                     **kwargs: Any) -> None:
    """Receiver of ``backup_failed``: only scheduled backups, only when the setting is on."""
    if not backup_settings.NOTIFY_ADMINS or arguments.get("purpose") != SCHEDULED:
        return
    database = arguments.get("database", "default")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    first_line = (str(exception).splitlines() or [type(exception).__name__])[0]
    subject = f"Scheduled backup failed: {first_line}"[:200]
    message = (
        f"The scheduled backup of database {database!r} on {platform.node()} failed at {when}.\n\n"
        f"{type(exception).__name__}: {exception}\n\n"
        "No new backup was written. Run `python manage.py backup_info` to see the newest backup and its age,\n"
        "and `python manage.py backup_create` to try again by hand.\n"
    )
    mail_admins(redact_url(subject), redact_url(message))  # an error can quote a URL with its credentials
    logger.info("Mailed the site's admins about the failed scheduled backup of %r.", database)


def mail_admins_on_drill_failure(sender: Any, *, arguments: dict[str, Any], result: Any = None,
                                 exception: BaseException | None = None, **kwargs: Any) -> None:
    """Receiver of ``drill_failed``: every failed drill, when the setting is on."""
    if not backup_settings.NOTIFY_ADMINS:
        return
    database = arguments.get("database", "default")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if result is not None:
        problems = "\n".join(f"  {p}" for p in result.problems[:20]) or "  (none listed)"
        subject = f"Restore drill failed: {result.name} does not restore"
        message = (
            f"The restore drill of {result.name} into a scratch {result.engine} database on {platform.node()} "
            f"failed at {when}.\n\nWhat failed, and where:\n{problems}\n\n"
            "The backup validates as a file but would not give back the data. Take a new backup and run\n"
            "`python manage.py backup_drill latest` to check it.\n"
        )
    else:
        first_line = (str(exception).splitlines() or [type(exception).__name__])[0]
        subject = f"Restore drill could not run: {first_line}"
        message = (
            f"The restore drill for database {database!r} on {platform.node()} could not run at {when}.\n\n"
            f"{type(exception).__name__}: {exception}\n\nRun `python manage.py backup_drill` by hand to see why.\n"
        )
    mail_admins(redact_url(subject[:200]), redact_url(message))
    logger.info("Mailed the site's admins about the failed restore drill for %r.", database)
