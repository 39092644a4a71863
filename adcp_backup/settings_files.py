"""Settings files and environment variables: captured byte for byte, secrets redacted, restored atomically."""
from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conf import backup_settings

REDACTED = "**redacted**"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class CapturedFile:
    path: str
    content: bytes | None
    mode: int | None
    withheld: str | None = None  # why the content stays out of the backup


def capture_files(paths: Iterable[Path] | None = None, *, withhold_secrets: bool = False) -> list[CapturedFile]:
    """The settings files as they are on disk; a missing file is recorded as missing.

    Files are stored byte for byte, so their secrets cannot be masked: with ``withhold_secrets`` a file
    holding secret-looking keys is recorded as withheld, without its content."""
    captured = []
    for path in paths if paths is not None else backup_settings.settings_files:
        try:
            content = path.read_bytes()
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            content, mode = None, None
        found = secret_keys(content) if withhold_secrets and content is not None else []
        if found:
            reason = f"it holds secret-looking keys ({', '.join(found[:10])}) and the backup is not encrypted"
            captured.append(CapturedFile(_display_path(path), None, None, withheld=reason))
        else:
            captured.append(CapturedFile(_display_path(path), content, mode))
    return captured


# A key names a secret when its last word is one of these (``gemini_api_key``, ``dbPassword``, ``SMTP_PASS``).
_SECRET_WORDS = r"KEY|KEYS|SECRET|SECRETS|TOKEN|TOKENS|PASS|PWD|PASSWD|PASSWORD|PASSPHRASE|CREDENTIAL|CREDENTIALS|DSN"
_SECRET_KEY = re.compile(rf"(?:^|_)(?:{_SECRET_WORDS})$")
_TEXT_KEY = re.compile(rb"""^\s*["']?([A-Za-z0-9_.\-]{1,200})["']?\s*[:=]\s*(\S.*)$""", re.MULTILINE)


def is_secret_key(key: str) -> bool:
    """Whether a settings key names a secret: by its last word, camelCase and dotted names included."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).replace("-", "_").replace(".", "_").upper()
    return bool(_SECRET_KEY.search(words)) or any(part in words for part in ("PASSWORD", "SECRET", "API_KEY"))


def secret_keys(content: bytes) -> list[str]:
    """The keys of ``content`` (JSON, else ``key = value`` / ``key: value`` lines) that hold a non-empty secret."""
    found: list[str] = []
    try:
        data: Any = json.loads(content)
    except ValueError:
        for match in _TEXT_KEY.finditer(content):
            key = match.group(1).decode("ascii", "replace")
            if is_secret_key(key) and match.group(2).strip(b"\"' ,;") and key not in found:
                found.append(key)
        return found
    stack: list[Any] = [data]
    seen = 0
    while stack and seen < 100_000:  # bounded: a settings file, not a puzzle
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, dict | list):
                    stack.append(value)
                elif is_secret_key(str(key)) and value not in (None, "", False) and str(key) not in found:
                    found.append(str(key))
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _display_path(path: Path) -> str:
    """The path relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name marks its value as a secret (ADCP_BACKUP_SECRET_PATTERNS)."""
    upper = name.upper()
    return any(pattern.upper() in upper for pattern in backup_settings.SECRET_PATTERNS)


# The secret shapes a value can hold, whatever its variable is called. Each keeps everything around the
# secret as it was (scheme, user name, host, IPv6 brackets, port, path), so the redacted value still says
# where it points.
#
# URL credentials: ``scheme://userinfo@host``. A password may hold any character, ``/ # ? @`` included, so
# the userinfo runs to the LAST ``@`` of the URL that is followed by a host (name, IPv4 or [IPv6]) and an
# optional port, then the end of the URL or ``/ ? #``. A userinfo without a colon is a token: all of it goes.
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>[^\s]+)")
_HOST_AFTER_AT = re.compile(r"@(?:\[[0-9A-Fa-f:.%A-Za-z]+\]|[A-Za-z0-9._~%!$&'()*+,;=\-]*)(?::\d*)?(?=[/?#]|$)")
_HOST_PORT = re.compile(r"\[[0-9A-Fa-f:.%A-Za-z]*\](?::\d*)?|[A-Za-z0-9._\-]+:\d+")
# Query-string values (``?api_key=...&sig=...``): every value, since their names prove nothing.
_QUERY_VALUE = re.compile(r"(?P<key>[?&;][^=&#\s]*=)(?P<value>[^&#\s]*)")
# libpq key/value connection strings: ``host=db password=s3cret`` or ``password='with spaces'``.
_DSN_PASSWORD = re.compile(r"(?P<key>\b(?:password|passwd|pwd|sslpassword)\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^\s;]+)",
                           re.IGNORECASE)


def _redact_one_url(match: re.Match[str]) -> str:
    scheme, rest = match.group("scheme"), match.group("rest")
    ats = list(_HOST_AFTER_AT.finditer(rest))
    ats = [m for m in ats if _looks_like_userinfo(rest[: m.start()])]
    if ats:
        at = ats[-1]
        userinfo, tail = rest[: at.start()], rest[at.start():]
        user, colon, _password = userinfo.partition(":")
        redacted_userinfo = f"{user}:{REDACTED}" if colon else REDACTED
        rest = redacted_userinfo + tail
        query_from = len(redacted_userinfo)
    else:
        query_from = 0
    head, tail = rest[:query_from], rest[query_from:]
    question = tail.find("?")
    if question != -1:
        tail = tail[:question] + _QUERY_VALUE.sub(_redact_query_value, tail[question:])
    return scheme + head + tail


def _looks_like_userinfo(text: str) -> bool:
    """Text before an ``@`` that can be credentials: no ``/`` (a path), or ``user:`` before the first one, as a
    password may hold ``/``. When in doubt the text is taken for credentials: masking too much is the safe way."""
    if "/" not in text:
        return True
    first = text.split("/", 1)[0]
    return ":" in first and not _HOST_PORT.fullmatch(first)


def _redact_query_value(match: re.Match[str]) -> str:
    return match.group("key") + (REDACTED if match.group("value") else "")


def _redact_dsn(match: re.Match[str]) -> str:
    return match.group("key") + REDACTED


def redact_url(value: str) -> str:
    """``value`` with every secret shape in it replaced: URL credentials, query-string values, DSN passwords."""
    if "://" in value:
        value = _URL.sub(_redact_one_url, value)
    if "=" in value:
        value = _DSN_PASSWORD.sub(_redact_dsn, value)
    return value


def redact_value(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if is_secret_name(name):
        return REDACTED if value else value
    return redact_url(value)


def capture_environment(*, include_secrets: bool = False, names: Sequence[str] | None = None,
                        environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The configured variables that are set, secrets redacted unless ``include_secrets``."""
    source = os.environ if environ is None else environ
    names = list(names if names is not None else backup_settings.ENV_VARS)
    variables: dict[str, str | None] = {}
    redacted: list[str] = []
    for name in names:
        if name not in source:
            continue
        value = source[name]
        shown = value if include_secrets else redact_value(name, value)
        if shown != value:
            redacted.append(name)
        variables[name] = shown
    return {
        "variables": variables,
        "redacted": redacted,
        "feature_flags": feature_flags(source),
    }


def feature_flags(source: dict[str, str] | Any) -> dict[str, bool]:
    return {
        "web_context_enabled": str(source.get("ENABLE_WEB_CONTEXT", "")).lower() in _TRUE,
        "debug_mode": str(source.get("DEBUG", "")).lower() in _TRUE,
        "skip_reference_validation": str(source.get("SKIP_REFERENCE_VALIDATION", "")).lower() in _TRUE,
    }


def mask_variables(variables: dict[str, Any]) -> dict[str, Any]:
    """Variables fit for output: secrets masked even where the backup holds them in clear."""
    return {name: redact_value(name, value) if isinstance(value, str) else value for name, value in variables.items()}


def target_for(recorded: str, configured: Sequence[Path] | None = None) -> Path | None:
    """Where a settings file recorded in a backup goes now: the configured file of that path, else of that name."""
    configured = list(configured if configured is not None else backup_settings.settings_files)
    recorded_path = (Path.cwd() / recorded).resolve()
    for path in configured:
        if path == recorded_path:
            return path
    for path in configured:
        if path.name == Path(recorded).name:
            return path
    return None


def write_atomically(path: Path, content: bytes, mode: int | None = None) -> None:
    """Temporary file beside the target, fsync, rename, fsync the folder: the file is old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        elif path.exists():
            os.chmod(temp, path.stat().st_mode & 0o777)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def record_problems(record: Any) -> list[Any]:
    """What is wrong with a settings-file record of a backup (validation and restore both ask, before the
    database commits). Nothing yet: path, mode, size and checksum rules belong here."""
    return []
