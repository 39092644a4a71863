"""Settings files and environment variables: captured byte for byte, secrets redacted, restored atomically."""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .conf import backup_settings

REDACTED = "**redacted**"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class CapturedFile:
    path: str
    content: bytes | None
    mode: int | None


def capture_files(paths: Iterable[Path] | None = None) -> list[CapturedFile]:
    """The settings files as they are on disk; a missing file is recorded as missing."""
    captured = []
    for path in paths if paths is not None else backup_settings.settings_files:
        try:
            content = path.read_bytes()
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            content, mode = None, None
        captured.append(CapturedFile(_display_path(path), content, mode))
    return captured


def _display_path(path: Path) -> str:
    """The path relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(pattern in upper for pattern in backup_settings.SECRET_PATTERNS)


def redact_url(value: str) -> str:
    """A URL with the password of its credentials replaced; any other text unchanged."""
    if "://" not in value or "@" not in value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        return re.sub(r"//[^/@]*@", "//" + REDACTED + "@", value)
    if parts.password is None and parts.username is None:
        return value
    user = parts.username or ""
    netloc = f"{user}:{REDACTED}@" if parts.password is not None else f"{REDACTED}@"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc += host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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
