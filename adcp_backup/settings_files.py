"""Settings files and environment variables: captured byte for byte, secrets redacted, restored atomically."""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conf import backup_settings
from .exceptions import BackupError, InvalidBackup, Problem, RestoreError, SettingsFilesNotWritten
from .format.events import FileRecord

REDACTED = "**redacted**"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class CapturedFile:
    path: str
    content: bytes | None
    mode: int | None
    withheld: str | None = None  # why the content stays out of the backup


def capture_files(paths: Iterable[Path] | None = None, *, withhold_secrets: bool = False) -> list[CapturedFile]:
    """The settings files as they are on disk, with their permission bits only; a missing one is recorded as missing.

    Files are stored byte for byte, so their secrets cannot be masked: with ``withhold_secrets`` a file
    holding secret-looking keys is recorded as withheld, without its content."""
    captured = []
    for path in paths if paths is not None else backup_settings.SETTINGS_FILES:
        try:
            with path.open("rb") as f:
                content = f.read()
                mode: int | None = os.fstat(f.fileno()).st_mode & 0o777
        except (FileNotFoundError, NotADirectoryError):
            content, mode = None, None
        except OSError as exc:
            raise BackupError(f"Cannot read the settings file {path}: {exc.strerror or exc}.") from exc
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
_TEXT_KEY = re.compile(rb"""^[ \t]*["']?([A-Za-z0-9_.\-]{1,200})["']?[ \t]*[:=][ \t]*(\S.*)$""", re.MULTILINE)


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
    ats = [m for m in _HOST_AFTER_AT.finditer(rest) if _looks_like_userinfo(rest[: m.start()])]
    if not ats:  # no host after any ``@`` (``[::1`` unclosed, a port that is not a number): still credentials
        ats = [m for m in re.finditer("@", rest) if _looks_like_userinfo(rest[: m.start()])]
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
    if ":" not in first:
        return False
    if not _HOST_PORT.fullmatch(first):
        return True
    # ``name:digits/...@host``: a host and port with an ``@`` later in the path, or a user whose password starts
    # with digits and holds a ``/``. Only a bracketed address, a dotted name or localhost is taken for a host.
    host = first.rsplit(":", 1)[0]
    return not (host.startswith("[") or "." in host or host.lower() == "localhost")


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


MAX_PATH_LENGTH = 4096
# A restored settings file gets read and write bits only: never execute, setuid, setgid or sticky.
PERMISSION_MASK = 0o666
DEFAULT_MODE = 0o600


def target_for(recorded: Any, configured: Sequence[Path] | None = None) -> Path | None:
    """Where a settings file recorded in a backup goes now: the configured file of that path, else of that name.

    The answer is always one of the configured paths; the recorded path is only compared, never opened."""
    if not _plausible_path(recorded):
        return None
    configured = list(configured if configured is not None else backup_settings.SETTINGS_FILES)
    recorded_path = Path(os.path.normpath(os.path.join(os.getcwd(), recorded)))
    for path in configured:
        if path == recorded_path:
            return path
    name = recorded_path.name
    for path in configured:
        if name and path.name == name:
            return path
    return None


def _plausible_path(recorded: Any) -> bool:
    return (isinstance(recorded, str) and 0 < len(recorded) <= MAX_PATH_LENGTH
            and not any(ord(c) < 32 or c == "\x7f" for c in recorded))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def applied_mode(record_mode: Any, target: Path) -> int:
    """The permission bits a restored file gets: the recorded ones masked to 0o666, else the existing file's."""
    if type(record_mode) is int:
        return record_mode & PERMISSION_MASK
    try:
        return target.stat().st_mode & PERMISSION_MASK
    except OSError:
        return DEFAULT_MODE


class RecordChecker:
    """Checks the settings-file records of a backup one by one, as a reader yields them.

    The one definition of a sound record, used by validation and by the restore before it commits: its path
    names a configured settings file (at most once), its mode is absent or an integer among the permission
    bits that leaves the file readable by its owner, and its size and checksum match its content."""

    def __init__(self, configured: Sequence[Path] | None = None) -> None:
        self.configured = list(configured if configured is not None else backup_settings.SETTINGS_FILES)
        self.targets: dict[Path, str] = {}

    def check(self, record: FileRecord) -> list[Problem]:
        path = getattr(record, "path", None)
        section = f"file {_shown(path)}" if not isinstance(path, str) or not _plausible_path(path) else f"file {path}"
        if not _plausible_path(path):
            return [Problem(section, "the path is not a plain file path (empty, too long, or holding a NUL or "
                                     "another control character)")]
        target = target_for(path, self.configured)
        if target is None:
            return [Problem(section, "not one of the configured settings files (ADCP_BACKUP_SETTINGS_FILES: "
                                     + ", ".join(p.name for p in self.configured) + ")")]
        problems = []
        if target in self.targets:
            problems.append(Problem(section, f"a second record for {target} (the first was {self.targets[target]})"))
        else:
            self.targets[target] = str(path)
        content = getattr(record, "content", None)
        if content is None:
            return problems
        if not isinstance(content, bytes):
            return [*problems, Problem(section, "the content is not bytes")]
        mode = getattr(record, "mode", None)
        if mode is not None:
            if type(mode) is not int:
                problems.append(Problem(section, f"the mode should be an integer, not {type(mode).__name__} "
                                                 f"{_shown(mode)}"))
            elif not 0 <= mode <= 0o777:
                problems.append(Problem(section, f"the mode {_octal(mode)} is not permission bits (0 to 0o777): "
                                                 "setuid, setgid, sticky or file-type bits are never restored"))
            elif not mode & 0o400:
                problems.append(Problem(section, f"the mode {_octal(mode)} would leave the file unreadable "
                                                 "by its owner"))
        size = getattr(record, "size", None)
        if size is not None and (type(size) is not int or size != len(content)):
            problems.append(Problem(section, f"the recorded size {_shown(size)} differs from the content's "
                                             f"{len(content)} bytes"))
        sha256 = getattr(record, "sha256", None)
        if sha256 is not None and sha256 != hashlib.sha256(content).hexdigest():
            problems.append(Problem(section, "checksum mismatch: the file's content was changed or damaged"))
        return problems


def _octal(mode: int) -> str:
    return oct(mode) if abs(mode) < 1 << 64 else f"{str(mode)[:20]}... (a {mode.bit_length()}-bit number)"


def check_records(records: Iterable[FileRecord], configured: Sequence[Path] | None = None) -> list[Problem]:
    """Every problem of these settings-file records (see RecordChecker)."""
    checker = RecordChecker(configured)
    return [problem for record in records for problem in checker.check(record)]


def unwritable_targets(records: Iterable[FileRecord], configured: Sequence[Path] | None = None) -> dict[str, str]:
    """The configured files these records would replace that cannot be written now: path -> why.

    Checked by the restore before it commits; a file that already holds the recorded content is not written."""
    failed: dict[str, str] = {}
    for record in records:
        target = target_for(getattr(record, "path", None), configured)
        if target is None or getattr(record, "content", None) is None:
            continue
        if target.is_symlink() or (target.exists() and not target.is_file()):
            failed[str(target)] = "it is not a regular file"
            continue
        if target.is_file():
            try:
                if target.read_bytes() == record.content:
                    continue
            except OSError as exc:
                failed[str(target)] = f"it cannot be read ({exc.strerror or exc})"
                continue
        folder = target.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            failed[str(target)] = f"{folder} is not a folder"
        elif not os.access(folder, os.W_OK | os.X_OK):
            failed[str(target)] = f"the folder {folder} is not writable"
    return failed


def refuse_unsound(records: Iterable[FileRecord], checker: RecordChecker | None = None, *,
                   targets: bool = True) -> None:
    """Raise at the first record that is unsound (InvalidBackup) or, with ``targets``, whose target cannot be
    written (RestoreError). Nothing is kept: a file of a million records costs one record's memory."""
    checker = checker if checker is not None else RecordChecker()
    for record in records:
        problems = checker.check(record)
        if problems:
            raise InvalidBackup(problems)
        failed = unwritable_targets([record], checker.configured) if targets else {}
        if failed:
            raise RestoreError("The settings files cannot be written, so nothing was restored: "
                               + "; ".join(f"{path}: {why}" for path, why in failed.items()) + ".")


def write_records(records: Sequence[FileRecord], *, dry_run: bool, name: str = "the backup",
                  restored: dict[str, int] | None = None) -> list[dict[str, str]]:
    """Write the records' content to their configured files (after the database committed); the report per file.

    A file that cannot be written does not stop the others; afterwards SettingsFilesNotWritten names them."""
    report: list[dict[str, str]] = []
    failed: dict[str, str] = {}
    for record in records:
        target = target_for(record.path)
        if target is None:
            report.append({"path": str(record.path), "action": "skipped: not a configured settings file"})
            continue
        if record.withheld is not None:
            report.append({"path": str(target),
                           "action": f"left alone: withheld from the backup, as {record.withheld}"})
            continue
        if record.content is None:
            report.append({"path": str(target), "action": "left alone: the file did not exist at backup time"})
            continue
        try:
            current = target.read_bytes() if target.is_file() else None
        except OSError:
            current = None
        if current == record.content:
            report.append({"path": str(target), "action": "unchanged"})
            continue
        if dry_run:
            report.append({"path": str(target), "action": "would be written"})
            continue
        try:
            write_atomically(target, record.content, applied_mode(record.mode, target))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            failed[str(target)] = reason
            report.append({"path": str(target), "action": f"NOT written: {reason}"})
            continue
        report.append({"path": str(target), "action": "written"})
    if failed:
        raise SettingsFilesNotWritten(name=name, failed=failed, files=report, restored=restored or {})
    return report


def write_atomically(path: Path, content: bytes, mode: int | None = None) -> None:
    """Temporary file beside the target, fsync, rename, fsync the folder: the file is old or new, never half.

    ``mode`` is masked to the read and write bits; without it the file keeps the existing file's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(temp, mode & PERMISSION_MASK)
        elif path.exists():
            os.chmod(temp, path.stat().st_mode & PERMISSION_MASK)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
