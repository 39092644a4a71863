"""How sizes and row counts are written for people, alike in the commands and the admin."""
from __future__ import annotations

import re


def format_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


ENCRYPTED_WITHOUT_KEY = ("The backup is encrypted and this server has no age identity that opens it "
                         "(the site's ADCP_BACKUP_AGE_IDENTITY setting names the identity file).")


def for_browser(text: str) -> str:
    """A message written for the command line, without its command-line advice, for a web page."""
    if "--identity" in text:
        return ENCRYPTED_WITHOUT_KEY
    text = re.sub(r"\s*\([^()]*\s--[a-z][^()]*\)", "", text)  # "(use --create-schema ...)"
    text = text.replace("every --keep-* count is 0", "every keep count is 0")
    return re.sub(r"(?<![\w-])--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", " "), text)
