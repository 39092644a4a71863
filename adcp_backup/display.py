"""How sizes and row counts are written for people, alike in the commands and the admin."""
from __future__ import annotations

import re


def format_size(size: int | None) -> str:
    """Bytes in binary units, the one way sizes are written: 512 bytes, 1.5 KiB, 64.0 MiB, up to TiB; "?" for
    a size that is not known. The admin's pages use it through the ``size`` template filter."""
    if size is None:
        return "?"
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if round(value, 1) < 1024:  # 1048575 bytes is 1.0 MiB, not 1024.0 KiB
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


ENCRYPTED_WITHOUT_KEY = ("The backup is encrypted and this server has no age identity that opens it "
                         "(the site's ADCP_BACKUP_AGE_IDENTITY setting names the identity file).")


def for_browser(text: str) -> str:
    """A message written for the command line, without its command-line advice, for a web page."""
    if "--identity" in text:
        return ENCRYPTED_WITHOUT_KEY
    text = re.sub(r"\s*\([^()]*\s--[a-z][^()]*\)", "", text)  # "(use --create-schema ...)"
    text = text.replace("every --keep-* count is 0", "every keep count is 0")
    return re.sub(r"(?<![\w-])--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", " "), text)
