"""A process killed with SIGKILL mid-restore changes nothing; mid-backup it leaves no usable backup."""
from __future__ import annotations

import pytest
from django.db import connections

from adcp_backup import services

from .helpers import table_state
from .processes import BIG, kill_at_marker, manage

pytestmark = pytest.mark.slow  # each seeds 60,000 products for a child process to work on

def test_sigkill_during_restore_leaves_the_database_unchanged(seeded, backup_env):
    seeded(size=BIG)
    name = services.backup_create(compression="gzip").name
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE product SET name = 'after the backup' WHERE id % 3 = 0")
        cursor.execute("DELETE FROM product_embeddings WHERE id > 1000")
    state = table_state()

    kill_at_marker(manage(["backup_restore", name, "--force", "--no-safety-backup"], backup_env), "restore product")

    assert table_state() == state
    with connections["default"].cursor() as cursor:
        cursor.execute("INSERT INTO products_fts(products_fts) VALUES('integrity-check')")
        cursor.execute("PRAGMA integrity_check")
        assert cursor.fetchone()[0] == "ok"


def test_sigkill_during_backup_leaves_nothing_that_lists_or_validates(seeded, backup_env):
    seeded(size=BIG)
    kill_at_marker(manage(["backup_create", "--compress"], backup_env), "backup product")

    assert services.backup_list() == []
    files = list((backup_env / "backups").iterdir())
    assert [p for p in files if not p.name.startswith(".")] == []  # only hidden files: partial, lock
    leftovers = [p for p in files if p.name.endswith(".partial")]
    assert leftovers
    for partial in leftovers:
        report = services.backup_validate(file=str(partial))
        assert not report.valid
    with pytest.raises(Exception, match="no backup"):
        services.backup_restore(file="latest")
