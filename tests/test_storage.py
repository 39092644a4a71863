"""The file-system backup storage: publication that never replaces a file it did not write."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from adcp_backup.exceptions import BackupError
from adcp_backup.storage import BackupStorage


def test_a_backup_never_replaces_a_file_that_took_its_name_meanwhile(backup_env, settings):
    storage = BackupStorage()
    name = "adcp-backup-20250101-000000-00000000.jsonl"
    folder = Path(settings.ADCP_BACKUP_DIR)
    with pytest.raises(BackupError, match="appeared while the backup was written"):
        with storage.writer(name) as out:
            out.write(b"our backup\n")
            (folder / name).write_bytes(b"someone else's file\n")
    assert (folder / name).read_bytes() == b"someone else's file\n"
    assert sorted(os.listdir(folder)) == [name]  # and no partial file is left behind
