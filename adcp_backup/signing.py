"""Provenance of backup files: an HMAC-SHA256 over each backup's header and trailer, keyed per installation.

Checksums prove a file is intact; they do not say who wrote it, since anyone can recompute them. A MAC
keyed by a secret only this installation holds does. Two are written into every native backup:

- the header's, over the header and the file's name: read when listing, so that ``latest``, monitoring and
  retention can tell this installation's backups from files merely dropped into the storage, without reading
  every file to its end;
- the trailer's, over the trailer, whose SHA-256 covers every line before it (row lines through the
  per-table checksums): checked by validation and restore, it covers every byte of the content.

The key is ``ADCP_BACKUP_SIGNING_KEY`` or, when that is empty, one derived from ``SECRET_KEY``. Older keys
(``ADCP_BACKUP_SIGNING_KEY_FALLBACKS``, or ``SECRET_KEY_FALLBACKS`` when the key is derived) still verify, so
a rotated key keeps the old backups recognised as "signed with an old key".
"""
from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings

from .conf import backup_settings
from .format.provenance import LABELS as LABELS
from .format.provenance import SIGNED as SIGNED
from .format.provenance import SIGNED_OLD_KEY as SIGNED_OLD_KEY
from .format.provenance import TRUSTED as TRUSTED
from .format.provenance import UNSIGNED as UNSIGNED
from .format.provenance import UNVERIFIED as UNVERIFIED
from .format.provenance import Provenance as Provenance

ALGORITHM = "hmac-sha256"
_DERIVATION = b"adcp-backup signing key v1"
_HEADER_CONTEXT = b"adcp-backup header v3\x00"
_TRAILER_CONTEXT = b"adcp-backup trailer v3\x00"
_NAME_CONTEXT = b"adcp-backup name v1\x00"
NAME_MAC_LENGTH = 16
_SIGNED_NAME = re.compile(r"^(?P<stem>adcp-backup-(?P<time>\d{8}-\d{6})-[0-9a-f]{8})-(?P<mac>[0-9a-f]{16})"
                          r"(?P<suffix>\.jsonl(?:\.gz|\.zst)?\.age)$")


def _derive(secret: str | bytes) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(raw, _DERIVATION, hashlib.sha256).digest()


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str | bytes):
        return [v for v in (str(value) if isinstance(value, str) else value.decode()).split(",") if v.strip()]
    return [str(v) for v in value if v]


def keys() -> list[bytes]:
    """The current key first, then the old ones still accepted for verification."""
    explicit = backup_settings.SIGNING_KEY
    if explicit:
        current = [explicit]
        old = backup_settings.SIGNING_KEY_FALLBACKS
    else:
        current = [str(settings.SECRET_KEY)]
        old = backup_settings.SIGNING_KEY_FALLBACKS + _as_list(getattr(settings, "SECRET_KEY_FALLBACKS", []))
    derived: list[bytes] = []
    for secret in current + old:
        key = _derive(secret)
        if key not in derived:
            derived.append(key)
    return derived


def _mac(key: bytes, context: bytes, payload: bytes) -> str:
    return hmac.new(key, context + payload, hashlib.sha256).hexdigest()


def _header_payload(header: dict[str, Any], name: str) -> bytes:
    body = {k: v for k, v in header.items() if k != "signature"}
    return name.encode() + b"\x00" + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def _trailer_payload(sha256: str, counts: Any) -> bytes:
    return str(sha256).encode() + b"\x00" + orjson.dumps(counts, option=orjson.OPT_SORT_KEYS)


def header_signature(header: dict[str, Any], name: str) -> dict[str, str]:
    """The ``signature`` field of a new backup's header (``header`` complete, ``name`` its file name)."""
    return {"alg": ALGORITHM, "mac": _mac(keys()[0], _HEADER_CONTEXT, _header_payload(header, name))}


def trailer_signature(sha256: str, counts: dict[str, int]) -> dict[str, str]:
    """The ``signature`` field of a new backup's trailer."""
    return {"alg": ALGORITHM, "mac": _mac(keys()[0], _TRAILER_CONTEXT, _trailer_payload(sha256, counts))}


def _verify(signature: Any, context: bytes, payload: bytes, what: str) -> Provenance:
    if signature is None:
        return Provenance(UNSIGNED, f"its {what} carries no signature: written elsewhere or by an older version")
    mac = signature.get("mac") if isinstance(signature, dict) else None
    if not isinstance(mac, str) or signature.get("alg") != ALGORITHM:
        return Provenance(UNSIGNED, f"its {what} signature is malformed")
    for position, key in enumerate(keys()):
        if hmac.compare_digest(_mac(key, context, payload), mac):
            return Provenance(SIGNED if position == 0 else SIGNED_OLD_KEY,
                              "" if position == 0 else "signed with a key this installation has since replaced")
    return Provenance(UNSIGNED, f"its {what} signature does not match this installation's keys: "
                                "written by another installation, or changed")


def verify_header(header: dict[str, Any], name: str) -> Provenance:
    """Whether ``header`` was signed here for a file called ``name`` (the name a copy keeps)."""
    try:
        payload = _header_payload(header, name)
    except (orjson.JSONEncodeError, TypeError):  # nested deeper than any header this tool writes
        return Provenance(UNSIGNED, "its header cannot be signed: it is not one this tool writes")
    return _verify(header.get("signature"), _HEADER_CONTEXT, payload, "header")


def verify_trailer(trailer: dict[str, Any]) -> Provenance:
    """Whether a trailer was signed here; meaningful only once every checksum before it was verified."""
    try:
        payload = _trailer_payload(trailer.get("sha256") or "", trailer.get("counts"))
    except (orjson.JSONEncodeError, TypeError):
        return Provenance(UNSIGNED, "its trailer cannot be signed: it is not one this tool writes")
    return _verify(trailer.get("signature"), _TRAILER_CONTEXT, payload, "trailer")


def legacy() -> Provenance:
    return Provenance(UNSIGNED, "a legacy-format file: the legacy backup code signed nothing")


# An encrypted backup hides its header and trailer from a host that holds only the age public keys, the one
# that writes backups. Its name carries a MAC of its own so that host can still tell its backups (and their
# creation time) from files dropped into the storage: ``adcp-backup-<time>-<random>-<mac>.jsonl.gz.age``.
def signed_name(stem: str, suffix: str) -> str:
    mac = _mac(keys()[0], _NAME_CONTEXT, (stem + suffix).encode())[:NAME_MAC_LENGTH]
    return f"{stem}-{mac}{suffix}"


def verify_name(name: str) -> tuple[Provenance, datetime | None]:
    """The provenance an encrypted file's name proves, and the creation time it states (UTC)."""
    match = _SIGNED_NAME.match(name)
    if match is None:
        return Provenance(UNVERIFIED, "encrypted, and no age identity here opens it: its signature cannot be "
                                      "checked"), None
    payload = (match.group("stem") + match.group("suffix")).encode()
    for position, key in enumerate(keys()):
        if hmac.compare_digest(_mac(key, _NAME_CONTEXT, payload)[:NAME_MAC_LENGTH], match.group("mac")):
            created = datetime.strptime(match.group("time"), "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
            return Provenance(SIGNED if position == 0 else SIGNED_OLD_KEY,
                              "encrypted: its name's signature was checked; its content's is checked where an "
                              "age identity opens it"), created
    return Provenance(UNSIGNED, "encrypted, and its name's signature does not match this installation's keys"), None
