"""Who wrote a backup, as far as its signature shows: the verdict a reader records once the trailer is read.

The MAC itself is computed by ``adcp_backup.signing`` with this installation's keys; a reader is handed that
check as a function and only records its verdict."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SIGNED = "signed"
SIGNED_OLD_KEY = "signed-old-key"
UNSIGNED = "unsigned"
UNVERIFIED = "unverified"  # an encrypted file no identity here opens: its signature cannot be read
TRUSTED = (SIGNED, SIGNED_OLD_KEY)
LABELS = {
    SIGNED: "signed here",
    SIGNED_OLD_KEY: "signed here (old key)",
    UNSIGNED: "unsigned",
    UNVERIFIED: "unverified (encrypted)",
}


@dataclass(frozen=True)
class Provenance:
    status: str  # one of SIGNED, SIGNED_OLD_KEY, UNSIGNED, UNVERIFIED
    note: str = ""

    @property
    def trusted(self) -> bool:
        return self.status in TRUSTED

    @property
    def label(self) -> str:
        return LABELS.get(self.status, self.status)


# Checks a trailer's signature: the trailer record as the file holds it -> the verdict.
TrailerVerifier = Callable[[dict[str, Any]], Provenance]
# Told the verdict before the reader yields End; raises to stop the read (a restore refusing an unsigned file).
ProvenanceCheck = Callable[[Provenance], None]
