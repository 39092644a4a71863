"""The file-system backup storage: publication that never replaces a file it did not write."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from adcp_backup.exceptions import BackupError, BackupNotFound
from adcp_backup.storage import BackupStorage, UnsafeName


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


# -- names: a backup name is one plain file name inside the storage, never a path ---------------------------
GOOD_NAMES = ["adcp-backup-20250101-000000-0a1b2c3d.jsonl.gz", "a", "A.b_c-d", "9" + "x" * 200, "x.partial.gz"]
BAD_NAMES = ["", ".hidden", "-dash", "_under", "../x", "a/b", "a\\b", "a..b", "a b", "a\nb", "é", "x" * 202,
             "adcp-backup.jsonl.partial", "a:b", "/abs", 7, None]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_a_plain_file_name_resolves_to_itself(backup_env, name):
    assert BackupStorage().resolve(name) == name


@pytest.mark.parametrize("name", BAD_NAMES, ids=[f"bad{n:02d}" for n in range(len(BAD_NAMES))])
def test_anything_else_is_refused_with_its_name_quoted(backup_env, name):
    with pytest.raises(UnsafeName) as caught:
        BackupStorage().resolve(name)
    assert str(caught.value) == f"{name!r} is not a valid backup name."
    assert isinstance(caught.value, BackupError) and isinstance(caught.value, ValueError)


def test_listing_shows_only_plain_names_sorted_and_no_partial_files(backup_env, settings):
    folder = Path(settings.ADCP_BACKUP_DIR)
    assert BackupStorage().names() == []  # no folder yet
    folder.mkdir(parents=True)
    for name in ("b.jsonl", "a.jsonl", ".hidden", "c.jsonl.partial", "x y.jsonl", "-dash"):
        (folder / name).write_bytes(b"")
    (folder / "sub").mkdir()
    assert BackupStorage().names() == ["a.jsonl", "b.jsonl"]


def test_exists_and_require_check_the_name_before_the_storage(backup_env, settings):
    folder = Path(settings.ADCP_BACKUP_DIR)
    folder.mkdir(parents=True)
    (folder / "there.jsonl").write_bytes(b"")
    storage = BackupStorage()
    assert (storage.exists("there.jsonl"), storage.exists("gone.jsonl")) == (True, False)
    assert storage.require("there.jsonl") == "there.jsonl"
    with pytest.raises(BackupNotFound) as missing:
        storage.require("gone.jsonl")
    assert str(missing.value) == f"There is no backup named 'gone.jsonl' in {folder.resolve()}."
    for call in (storage.exists, storage.require):
        with pytest.raises(UnsafeName):
            call("../there.jsonl")
