"""scripts/backup_cli.py run as a separate process from the repository root, as cron runs it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from .helpers import create_schema, table_state
from .legacy_fixtures import v2_document, write_v2
from .processes import ROOT, child_env

pytestmark = pytest.mark.slow  # a child process per command line, each starting Django


@pytest.fixture
def cli(backup_env: Path) -> Any:
    """Runs the script on the test database file, with the test's backup folder and settings files."""
    env = child_env(backup_env, ADCP_BACKUP_ENV_VARS="EMBEDDINGS_PROVIDER")

    def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        connections["default"].close()  # the child process writes the same SQLite file
        return subprocess.run([sys.executable, str(ROOT / "scripts" / "backup_cli.py"), *args] if cwd != ROOT
                              else [sys.executable, "scripts/backup_cli.py", *args],
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)

    return run


def test_legacy_command_lines_validate_and_restore_a_legacy_file(seeded, backup_env, cli):
    seeded()
    source = table_state()
    good = write_v2(backup_env / "comprehensive_backup_20250902_174646.json.gz", v2_document())
    broken_document = v2_document()
    broken_document["products"][0]["tenant_id"] = 404
    broken = write_v2(backup_env / "comprehensive_backup_20250902_000000.json.gz", broken_document)

    valid = cli("validate", str(good))
    assert valid.returncode == 0, valid.stderr
    assert "valid (legacy v2.0, gzip)" in valid.stdout
    invalid = cli("validate", str(broken))
    assert invalid.returncode == 2
    assert "product row 1: tenant_id 404 has no row in tenant" in invalid.stdout
    assert "Traceback" not in invalid.stderr

    create_schema("default")
    empty = table_state()
    refused = cli("restore", str(good))  # no --force and no terminal: refused, as a cron job must be
    assert refused.returncode == 1 and "Refusing to restore" in refused.stderr
    assert cli("restore", str(broken), "--force").returncode == 2
    assert cli("restore", str(good), "--validate-only").returncode == 0
    assert table_state() == empty

    unsigned = cli("restore", str(good), "--force")  # the legacy code signed nothing: restoring one is a choice
    assert unsigned.returncode == 1 and "--allow-unsigned" in unsigned.stderr
    assert table_state() == empty
    restored = cli("restore", str(good), "--force", "--allow-unsigned")
    assert restored.returncode == 0, restored.stderr
    assert "Restored: comprehensive_backup_20250902_174646.json.gz (legacy v2.0)" in restored.stdout
    assert "AIza-legacy-plain-secret" not in restored.stdout + restored.stderr
    state = table_state()
    assert state["product"] == source["product"] and state["tenant"] == source["tenant"]


def test_create_list_and_info_from_the_legacy_command_line(seeded, backup_env, cli):
    seeded()
    created = cli("create", "--compress")
    assert created.returncode == 0, created.stderr
    assert ".jsonl.gz" in created.stdout
    write_v2(backup_env / "backups" / "comprehensive_backup_20250902_174646.json.gz", v2_document())

    listed = cli("--json", "list", "--limit", "1")
    assert listed.returncode == 0, listed.stderr
    backups = json.loads(listed.stdout)["backups"]
    assert len(backups) == 1 and backups[0]["format"] == "adcp-backup v3"
    everything = cli("list")
    assert "legacy v2.0" in everything.stdout and "adcp-backup v3" in everything.stdout

    (backup_env / "out").mkdir()
    output = cli("create", "--output", "out", cwd=backup_env)  # relative to the working directory
    assert output.returncode == 0, output.stderr
    assert len(list((backup_env / "out").iterdir())) == 1

    info = cli("info")
    assert info.returncode == 0 and "Backups: 2" in info.stdout
    assert cli("validate", "no-such-backup.json").returncode == 1
    assert cli("restore").returncode == 2  # argparse: a missing argument
