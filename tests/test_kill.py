"""A process killed with SIGKILL mid-restore changes nothing; mid-backup it leaves no usable backup."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connections

from adcp_backup import demo, services

from .helpers import table_state

ROOT = Path(__file__).resolve().parent.parent
BIG = demo.DemoSize(tenants=20, products=60_000, agents=2, embeddings=2_000, dim=64)


def manage(args: list[str], cwd: Path, **extra: str) -> subprocess.Popen[str]:
    """manage.py of the project in ``cwd`` on the test database, its output piped; ``extra`` adds variables."""
    db = connections["default"].settings_dict["NAME"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{db}",
        "ADCP_BACKUP_DIR": str(cwd / "backups"),
        "ADCP_BACKUP_SETTINGS_FILES": "data/app_settings.json,data/tenant_settings.json",
        "ADCP_BACKUP_LOG_FILE": str(cwd / "ops.log"),
        **extra,
    }
    return subprocess.Popen([sys.executable, str(ROOT / "manage.py"), *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_when(proc: subprocess.Popen, marker: str) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if marker in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    if proc.returncode != -signal.SIGKILL:
        pytest.fail(f"the process ended by itself (exit {proc.returncode}) before it could be killed")


def test_sigkill_during_restore_leaves_the_database_unchanged(seeded, backup_env):
    seeded(size=BIG)
    name = services.backup_create(compression="gzip").name
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE product SET name = 'after the backup' WHERE id % 3 = 0")
        cursor.execute("DELETE FROM product_embeddings WHERE id > 1000")
    state = table_state()
    connections["default"].close()

    proc = manage(["backup_restore", name, "--force", "--no-safety-backup"], backup_env)
    kill_when(proc, "restore product")

    assert table_state() == state
    with connections["default"].cursor() as cursor:
        cursor.execute("INSERT INTO products_fts(products_fts) VALUES('integrity-check')")
        cursor.execute("PRAGMA integrity_check")
        assert cursor.fetchone()[0] == "ok"


def test_sigkill_during_backup_leaves_nothing_that_lists_or_validates(seeded, backup_env):
    seeded(size=BIG)
    connections["default"].close()
    proc = manage(["backup_create", "--compress"], backup_env)
    kill_when(proc, "backup product")

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
