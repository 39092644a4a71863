"""Uploaded backup files: the request protocol (size limit, handlers, extra files) and the quarantine they
are streamed to under a generated name."""
from __future__ import annotations

import os
import secrets
import stat
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest

from .conf import backup_settings
from .display import format_size
from .exceptions import BackupConfigurationError
from .storage import BackupStorage

UPLOAD_PREFIX = "adcp-upload-"
QUARANTINE_FOLDER = ".incoming"
# Longest first: the suffix kept from the uploaded file's name, for people reading the listing. The
# format itself is always detected from the content.
KNOWN_SUFFIXES = (
    ".jsonl.gz.age", ".jsonl.zst.age", ".jsonl.age", ".jsonl.gz", ".jsonl.zst", ".jsonl",
    ".json.gz", ".json", ".age", ".gz", ".zst",
)


def quarantine_dir() -> Path:
    """Where uploads wait for validation: a hidden folder of the backup folder, never listed as a backup; with
    remote storage, one in the temporary folder. Each folder of ours on the way is created 0700, or refused when
    it exists and is not a private folder of this user (another user could read or swap the uploads)."""
    storage = BackupStorage()
    if storage.is_local:
        base = Path(storage.location)
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder = base / QUARANTINE_FOLDER
        _private_folder(folder)
        return folder
    base = (backup_settings.TEMP_DIR or Path(tempfile.gettempdir())) / f"adcp-backup-{os.getuid()}"
    _private_folder(base)
    folder = base / QUARANTINE_FOLDER
    _private_folder(folder)
    return folder


def _private_folder(folder: Path) -> None:
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise BackupConfigurationError(f"Cannot create the upload folder {folder}: {exc.strerror}.") from exc
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise BackupConfigurationError(
            f"The upload folder {folder} exists but is not a private folder of this user (a symbolic link, another "
            f"owner, or mode {stat.S_IMODE(info.st_mode):04o} wider than 0700); uploads are refused until it is "
            "removed or fixed.")


def generated_name(original_name: str, *, now: datetime | None = None) -> str:
    """A fresh, safe storage name; the user's file name contributes at most a known suffix."""
    now = now or datetime.now(UTC)
    lowered = (original_name or "").lower()
    suffix = next((s for s in KNOWN_SUFFIXES if lowered.endswith(s)), ".bin")
    return f"{UPLOAD_PREFIX}{now:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}{suffix}"


class QuarantinedFile:
    """The outcome of one uploaded file: where its bytes are, how many, and the name it came with."""

    def __init__(self, path: Path, size: int, original_name: str) -> None:
        self.path = path
        self.size = size
        self.original_name = original_name

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class QuarantineUploadHandler(FileUploadHandler):
    """Writes each uploaded chunk straight to a quarantine file; stops the upload past ``max_size`` bytes."""

    def __init__(self, request: Any = None, *, max_size: int, folder: Path) -> None:
        super().__init__(request)
        self.max_size = max_size
        self.folder = folder
        self.too_large = False
        self._path: Path | None = None
        self._file: IO[bytes] | None = None
        self._size = 0

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self._discard()
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".quarantine", dir=self.folder)
        self._path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._size = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self._size += len(raw_data)
        if self._size > self.max_size:
            self.too_large = True
            self._discard()
            raise StopUpload(connection_reset=False)
        assert self._file is not None
        self._file.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> QuarantinedFile | None:  # type: ignore[override]
        if self._file is None or self._path is None:
            return None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        path, self._path = self._path, None  # the view owns the file from here on
        return QuarantinedFile(path, self._size, self.file_name or "")

    def upload_interrupted(self) -> None:
        self._discard()

    def _discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None


# -- the upload protocol of a request -------------------------------------------------------------------------
FORM_ALLOWANCE = 64 * 1024  # room for the multipart form around the file


def too_large_message(limit: int) -> str:
    return f"The file is larger than the upload limit of {format_size(limit)}; nothing was kept."


def prepare(request: HttpRequest, *, limit: int) -> str | None:
    """Before anything reads the body: refuse a declared length over the limit, else send the file's bytes
    straight to quarantine. Returns the reason for a refusal, or None."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit + FORM_ALLOWANCE:
        return too_large_message(limit)
    try:
        folder = quarantine_dir()
    except BackupConfigurationError as exc:  # a folder planted by another user: say so, keep nothing
        return str(exc)
    request.upload_handlers = [QuarantineUploadHandler(request, max_size=limit, folder=folder)]
    return None


def collect(request: HttpRequest, *, field: str, limit: int) -> tuple[QuarantinedFile | None, str | None]:
    """After the body was read: the one quarantined file of ``field``, or the reason nothing is kept (every
    other received file is discarded either way)."""
    received = [f for f in request.FILES.getlist(field) if isinstance(f, QuarantinedFile)]
    for extra in request.FILES.values():
        if isinstance(extra, QuarantinedFile) and extra not in received:
            extra.discard()
    handler = request.upload_handlers[0] if request.upload_handlers else None
    if getattr(handler, "too_large", False):
        discard(received)
        return None, too_large_message(limit)
    if len(received) != 1 or received[0].size == 0:
        discard(received)
        return None, "Choose one non-empty backup file to upload."
    return received[0], None


def discard_received(request: HttpRequest) -> None:
    """Drop every file a refused request brought (a failed CSRF check, for instance)."""
    discard([f for f in request.FILES.values() if isinstance(f, QuarantinedFile)])


def discard(files: Sequence[QuarantinedFile]) -> None:
    for received in files:
        received.discard()
