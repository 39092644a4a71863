"""This installation's age keys: the recipients of new encrypted backups and the identities that open them,
read from settings (or an identity file named on the command line) and parsed for the format layer."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .conf import backup_settings
from .exceptions import BackupConfigurationError, EncryptionKeyError
from .format.crypto import PUBLIC_KEY_PREFIX, SECRET_KEY_PREFIX, Identity, Recipient, pyrage


def configured_recipients() -> list[Recipient]:
    """The recipients of new encrypted backups, parsed; a clear error when there are none or one is wrong."""
    keys = backup_settings.AGE_RECIPIENTS
    if not keys:
        raise BackupConfigurationError(
            "Encryption is on but ADCP_BACKUP_AGE_RECIPIENTS is empty: set it to one or more age public keys "
            "(age1..., as printed by age-keygen), comma-separated."
        )
    return parse_recipients(keys)


def parse_recipients(keys: Sequence[str]) -> list[Recipient]:
    x25519 = pyrage().x25519
    recipients: list[Recipient] = []
    for key in keys:
        if not key.startswith(PUBLIC_KEY_PREFIX):
            raise BackupConfigurationError(
                f"ADCP_BACKUP_AGE_RECIPIENTS holds {key[:12]!r}..., which is not an age public key (age1...)."
            )
        try:
            recipients.append(x25519.Recipient.from_str(key))
        except Exception as exc:  # pyrage.RecipientError
            raise BackupConfigurationError(f"{key!r} is not a valid age public key ({exc}).") from exc
    return recipients


def load_identities(identity: str | os.PathLike[str] | None = None) -> list[Identity]:
    """The private keys of an identity file (``identity``, else ADCP_BACKUP_AGE_IDENTITY).

    Error messages name where the path came from, never the path or the file's content."""
    origin = "the identity file given with --identity" if identity else "the identity file in ADCP_BACKUP_AGE_IDENTITY"
    path = Path(identity).expanduser() if identity else backup_settings.AGE_IDENTITY
    if path is None:
        raise EncryptionKeyError(
            "The backup is encrypted with age and no identity is configured: pass --identity PATH "
            "or set ADCP_BACKUP_AGE_IDENTITY to the identity file written by age-keygen."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise EncryptionKeyError(f"Cannot decrypt: {origin} does not exist.") from exc
    except IsADirectoryError as exc:
        raise EncryptionKeyError(f"Cannot decrypt: {origin} is a folder, not a file.") from exc
    except PermissionError as exc:
        raise EncryptionKeyError(f"Cannot decrypt: {origin} cannot be read (permission denied).") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise EncryptionKeyError(f"Cannot decrypt: {origin} cannot be read ({type(exc).__name__}).") from exc
    x25519 = pyrage().x25519
    identities: list[Identity] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line.startswith(SECRET_KEY_PREFIX):
            continue
        try:
            identities.append(x25519.Identity.from_str(line))
        except Exception as exc:  # pyrage.IdentityError; its text never carries the key
            raise EncryptionKeyError(f"Cannot decrypt: line {number} of {origin} is not a valid age identity.") from exc
    if not identities:
        raise EncryptionKeyError(
            f"Cannot decrypt: {origin} holds no {SECRET_KEY_PREFIX}... line (write one with age-keygen)."
        )
    return identities
