"""E-mail to the site's ADMINS when a scheduled backup fails (ADCP_BACKUP_NOTIFY_ADMINS)."""
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
