"""Logging for operators: a log file only its owner reads, and secrets masked in every record."""
from __future__ import annotations

import logging
import os
from typing import Any

from .settings_files import redact_url


class PrivateFileHandler(logging.FileHandler):
    """A FileHandler whose file is created mode 0600 and never opened through a symbolic link.

    The operations log names backups, databases and hosts; other users of the machine need not read it. An
    existing log of this user is narrowed to 0600 too (earlier versions created it 0644)."""

    def _open(self) -> Any:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_uid == os.getuid():
                os.fchmod(fd, 0o600)
        except OSError:
            pass
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


class RedactingFilter(logging.Filter):
    """Masks the secret shapes (URL credentials, query-string values, DSN passwords) in a record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_url(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
