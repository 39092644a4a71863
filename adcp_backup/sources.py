"""Turns what a user typed (a path, a storage name or "latest") into one backup file to open."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .exceptions import BackupNotFound
from .storage import BackupStorage, UnsafeName, open_path


@dataclass(frozen=True)
class Source:
    """One backup file: in the storage (``name``) or anywhere on the file system (``path``)."""

    name: str
    path: str | None
    in_storage: bool
    _open: Callable[[], IO[bytes]]

    def open(self) -> IO[bytes]:
        return self._open()

    @property
    def display(self) -> str:
        return self.path or self.name


def from_storage(storage: BackupStorage, name: str) -> Source:
    name = storage.require(name)
    return Source(name=name, path=storage.path(name), in_storage=True, _open=lambda: storage.open(name))


def from_path(path: str | os.PathLike[str]) -> Source:
    resolved = Path(path).expanduser()
    resolved = (Path.cwd() / resolved).resolve() if not resolved.is_absolute() else resolved.resolve()
    if not resolved.exists():
        raise BackupNotFound(f"There is no file {str(path)!r} (looked for {resolved}).")
    if resolved.is_dir():
        raise BackupNotFound(f"{str(path)!r} is a folder, not a backup file.")
    return Source(name=resolved.name, path=str(resolved), in_storage=False, _open=lambda: open_path(resolved))


def resolve(file: str, storage: BackupStorage, *, latest: Callable[[], str | None] | None = None) -> Source:
    """An absolute path or one with a folder part: the file system (relative to the working directory).
    A bare name: the backup storage, then the working directory. The word ``latest``: the newest backup."""
    if not file or not file.strip():
        raise BackupNotFound("No backup file was given.")
    if file == "latest":
        name = latest() if latest is not None else None
        if name is None:
            raise BackupNotFound(f"There is no backup in {storage.location} to take as 'latest'.")
        return from_storage(storage, name)
    if os.path.isabs(file) or os.sep in file or (os.altsep and os.altsep in file) or file in (".", ".."):
        return from_path(file)
    try:
        if storage.exists(file):
            return from_storage(storage, file)
    except UnsafeName:
        pass
    if (Path.cwd() / file).is_file():
        return from_path(file)
    raise BackupNotFound(f"There is no backup named {file!r} in {storage.location}, nor such a file here.")
