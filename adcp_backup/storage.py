"""The backup location, through Django's storage API: safe names, atomic publication, streaming reads."""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages

from .conf import backup_settings
from .exceptions import BackupError, BackupNotFound

logger = logging.getLogger(__name__)

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
PARTIAL_SUFFIX = ".partial"


class UnsafeName(BackupError, ValueError):
    """A backup name that could reach outside the backup storage."""


class HashingWriter:
    """Passes bytes on to a file while counting them and hashing them."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


@dataclass(frozen=True)
class PartialFile:
    """A temporary file an interrupted backup left behind (a kill -9 leaves no chance to remove it)."""

    path: Path
    size: int
    age: float  # seconds since it was last written

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def get_storage() -> Storage:
    alias = backup_settings.STORAGE_ALIAS
    if alias in getattr(settings, "STORAGES", {}):
        return storages[alias]
    return FileSystemStorage(location=str(backup_settings.DIR), file_permissions_mode=0o600,
                             directory_permissions_mode=0o700)


class BackupStorage:
    def __init__(self, storage: Storage | None = None) -> None:
        self.storage = storage if storage is not None else get_storage()

    @property
    def is_local(self) -> bool:
        return isinstance(self.storage, FileSystemStorage)

    @property
    def location(self) -> str:
        """Where the backups are, fit for display: a folder, or a bucket and prefix; never credentials."""
        if self.is_local:
            return str(Path(cast(FileSystemStorage, self.storage).location).resolve())
        bucket = getattr(self.storage, "bucket_name", None)
        if bucket:
            prefix = str(getattr(self.storage, "location", "") or "").strip("/")
            return f"s3://{bucket}/{prefix + '/' if prefix else ''}"
        return f"{type(self.storage).__module__}.{type(self.storage).__name__}"

    def resolve(self, name: str) -> str:
        """``name`` checked to be one plain file name inside the storage; raises UnsafeName otherwise."""
        if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name or name.endswith(PARTIAL_SUFFIX):
            raise UnsafeName(f"{name!r} is not a valid backup name.")
        return name

    def names(self) -> list[str]:
        try:
            _dirs, files = self.storage.listdir("")
        except FileNotFoundError:
            return []
        return sorted(f for f in files if SAFE_NAME.match(f) and not f.endswith(PARTIAL_SUFFIX))

    def exists(self, name: str) -> bool:
        return self.storage.exists(self.resolve(name))

    def require(self, name: str) -> str:
        name = self.resolve(name)
        if not self.storage.exists(name):
            raise BackupNotFound(f"There is no backup named {name!r} in {self.location}.")
        return name

    def open(self, name: str) -> IO[bytes]:
        """The backup's bytes as a stream; from S3 without holding the object in memory or on disk."""
        name = self.require(name)
        if not self.is_local and _is_s3(self.storage):
            return cast(IO[bytes], _S3Stream(self.storage, name))
        return self.storage.open(name, "rb")

    def size(self, name: str) -> int:
        return self.storage.size(self.resolve(name))

    def modified(self, name: str) -> datetime | None:
        try:
            return self.storage.get_modified_time(self.resolve(name))
        except (NotImplementedError, OSError):
            return None

    def path(self, name: str) -> str | None:
        if not self.is_local:
            return None
        return str(Path(self.storage.path(self.resolve(name))).resolve())

    def delete(self, name: str) -> None:
        self.storage.delete(self.require(name))

    def free_space(self) -> int | None:
        if not self.is_local:
            return None
        location = Path(cast(FileSystemStorage, self.storage).location)
        while not location.exists() and location != location.parent:
            location = location.parent
        stat = os.statvfs(location)
        return stat.f_bavail * stat.f_frsize

    def partial_files(self) -> list[PartialFile]:
        """Partial files of interrupted backups: in the backup folder, and in the temporary folder of uploads
        to remote storage. Only regular files of this user, never through a symbolic link."""
        folders = [Path(cast(FileSystemStorage, self.storage).location)] if self.is_local else []
        folders.append(backup_settings.TEMP_DIR or Path(tempfile.gettempdir()))
        found: list[PartialFile] = []
        now = time.time()
        for folder in dict.fromkeys(folders):
            try:
                names = os.listdir(folder)
            except OSError:
                continue
            for name in names:
                if not (name.startswith(".") and name.endswith(PARTIAL_SUFFIX) and "adcp-" in name):
                    continue
                path = folder / name
                try:
                    info = path.lstat()
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid():
                    found.append(PartialFile(path, info.st_size, max(0.0, now - info.st_mtime)))
        return sorted(found, key=lambda p: str(p.path))

    @contextmanager
    def writer(self, name: str, *, verify: bool = True) -> Iterator[HashingWriter]:
        """Write a new backup; it appears under ``name`` only if the block ends without an exception."""
        name = self.resolve(name)
        if self.storage.exists(name):
            raise BackupError(f"A backup named {name!r} already exists.")
        if self.is_local:
            final = Path(self.storage.path(name))
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            folder, prefix = final.parent, f".{name}."
        else:
            folder = backup_settings.TEMP_DIR or Path(tempfile.gettempdir())
            prefix = ".adcp-backup-"
        # A fresh, unpredictable name created with O_EXCL|O_NOFOLLOW, mode 0600: nothing planted at a known path
        # can receive the backup or redirect the write. The file is then only used through this descriptor.
        try:
            fd, temp_name = tempfile.mkstemp(prefix=prefix, suffix=PARTIAL_SUFFIX, dir=folder)
        except OSError as exc:
            raise BackupError(f"Cannot create a temporary file in {folder}: {exc.strerror}.") from exc
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "w+b", buffering=1 << 20) as raw:
                hashing = HashingWriter(raw)
                yield hashing
                raw.flush()
                os.fsync(raw.fileno())
                if verify:
                    _verify_descriptor(raw.fileno(), hashing.sha256.hexdigest(), hashing.size)
                if self.is_local:
                    _publish_without_overwriting(temp, final)
                    _fsync_dir(final.parent)
                else:
                    raw.seek(0)
                    self._upload(name, raw, hashing.size, verify=verify)
        finally:
            temp.unlink(missing_ok=True)

    def _upload(self, name: str, raw: IO[bytes], size: int, *, verify: bool) -> None:
        """Send the finished temporary file to remote storage; an interrupted upload leaves no parts behind."""
        try:
            saved = self.storage.save(name, File(raw, name=name))
        except BaseException:  # SIGINT, SIGTERM and SIGHUP included: S3 bills unfinished multipart uploads
            abort_multipart_uploads(self.storage, name)
            raise
        if saved != name:
            self.storage.delete(saved)
            raise BackupError(f"The storage renamed the backup to {saved!r}; it was removed.")
        if verify and self.storage.size(name) != size:
            self.storage.delete(name)
            raise BackupError("The storage holds a different size than was uploaded; the backup was removed.")

    def save_upload(self, name: str, chunks: Iterator[bytes]) -> int:
        """Store uploaded bytes under ``name`` through the same atomic path as a new backup."""
        with self.writer(name, verify=False) as out:
            for chunk in chunks:
                out.write(chunk)
        return self.size(name)


def _publish_without_overwriting(temp: Path, final: Path) -> None:
    """Give ``temp`` the name ``final`` atomically, refusing if a file took that name meanwhile."""
    try:
        os.link(temp, final)  # unlike a rename, a hard link never replaces an existing file
    except FileExistsError as exc:
        raise BackupError(f"A file named {final.name!r} appeared while the backup was written; "
                          "it was left alone and this backup was not kept.") from exc
    except OSError:  # a file system without hard links: the name was free a moment ago and is random
        os.replace(temp, final)
        return
    temp.unlink()


def _is_s3(storage: Storage) -> bool:
    """django-storages' S3Storage (or a subclass), recognised without importing it."""
    return any(f"{c.__module__}.{c.__name__}" == "storages.backends.s3.S3Storage" for c in type(storage).__mro__)


class _S3Stream(io.RawIOBase):
    """An S3 object read as one streamed GET: S3Storage.open() would download all of it first."""

    def __init__(self, storage: Any, name: str) -> None:
        super().__init__()
        key = storage._normalize_name(name)  # the storage's own key for a name: its prefix, made safe
        try:
            self._body = storage.bucket.Object(key).get()["Body"]
        except Exception as exc:  # botocore ClientError
            status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                raise BackupNotFound(f"There is no backup named {name!r} in the storage.") from exc
            raise BackupError(f"Cannot read {name!r} from the storage: {exc}") from exc

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except Exception as exc:  # botocore / urllib3 network errors
            raise BackupError(f"Reading the backup from the storage failed: {exc}") from exc
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _verify_descriptor(fd: int, sha256: str, size: int) -> None:
    """Read the written file back through its own descriptor (never by name) and compare."""
    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        h.update(chunk)
        offset += len(chunk)
    if offset != size or os.fstat(fd).st_size != size or h.hexdigest() != sha256:
        raise BackupError("The backup read back from disk differs from what was written; it was not kept.")


def abort_multipart_uploads(storage: Storage, name: str) -> int:
    """Abort the unfinished S3 multipart uploads of ``name`` (a killed upload leaves its parts, billed, until
    aborted); the number aborted. Other storages: nothing to do."""
    if not _is_s3(storage):
        return 0
    aborted = 0
    try:
        key = storage._normalize_name(name)  # type: ignore[attr-defined]
        client = storage.connection.meta.client  # type: ignore[attr-defined]
        bucket = storage.bucket_name  # type: ignore[attr-defined]
        listing = client.list_multipart_uploads(Bucket=bucket, Prefix=key)
        for upload in listing.get("Uploads", ()):
            if upload.get("Key") == key:
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                aborted += 1
    except Exception as exc:  # botocore errors: report, never hide the interruption that brought us here
        logger.warning("Could not abort the unfinished upload of %s: %s. A bucket lifecycle rule "
                       "(AbortIncompleteMultipartUpload, docs/storage.md) removes it.", name, exc)
        return aborted
    if aborted:
        logger.warning("Aborted %s unfinished multipart upload(s) of %s.", aborted, name)
    return aborted


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_path(path: str | os.PathLike[str]) -> IO[bytes]:
    try:
        return open(path, "rb")
    except FileNotFoundError as exc:
        raise BackupNotFound(f"There is no file {str(path)!r}.") from exc
    except IsADirectoryError as exc:
        raise BackupNotFound(f"{str(path)!r} is a folder, not a backup file.") from exc
    except PermissionError as exc:
        raise BackupError(f"Cannot read {str(path)!r}: permission denied.") from exc


def stream_file(handle: IO[bytes] | Any, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    try:
        while chunk := handle.read(chunk_size):
            yield chunk
    finally:
        handle.close()


@contextmanager
def open_output(storage: BackupStorage, name: str, output: str | os.PathLike[str] | None,
                notes: list[str]) -> Iterator[tuple[HashingWriter, str, str | None]]:
    """Where a new backup is written: the storage under ``name``, or ``output`` (a file, or a folder to put
    ``name`` in, its missing folders created private). Yields the writer, the final name and path; a note
    says which folder was created."""
    if output is None:
        with storage.writer(name, verify=backup_settings.VERIFY) as out:
            yield out, name, storage.path(name)
        return
    as_folder = str(output).endswith((os.sep, "/"))  # "DIR/": a folder, created when missing
    target = Path(output).expanduser()
    target = target if target.is_absolute() else Path.cwd() / target
    if as_folder or target.is_dir():
        target = target / name
    if os.path.lexists(target):
        raise BackupError(f"{target} already exists; a backup never overwrites a file.")
    created = make_private_folders(target.parent)
    if created:
        notes.append(f"Created the folder {created[0]} (mode 0700) for the backup.")
        logger.info("Created the folder %s (mode 0700) for backup %s", created[0], target.name)
    local = BackupStorage(local_folder(target.parent))
    with local.writer(target.name, verify=backup_settings.VERIFY) as out:
        yield out, target.name, str(target.resolve())


def make_private_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents, each 0700 whatever the umask; the ones created, outermost first."""
    missing: list[Path] = []
    probe = folder
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    created: list[Path] = []
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
            os.chmod(path, 0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise BackupError(f"Cannot create the folder {path}: {exc.strerror}.") from exc
        created.append(path)
    if not folder.is_dir():
        raise BackupError(f"{folder} is not a folder.")
    return created


def local_folder(folder: Path) -> FileSystemStorage:
    """A folder of this machine as a storage, its files private to this user."""
    return FileSystemStorage(location=str(folder), file_permissions_mode=0o600)
