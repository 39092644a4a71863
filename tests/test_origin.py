"""Backups belong to a database: two databases sharing one storage never take each other's backups for their own."""
from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from adcp_backup import demo, origin, services
from adcp_backup.exceptions import OtherDatabase

from .helpers import table_state
from .legacy_fixtures import v2_document, write_v2
from .scheduling_fixtures import write_backup

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

SECOND_SIZE = demo.DemoSize(tenants=2, products=20, agents=1, embeddings=4, dim=16)


def run(name: str, *args: str, stdin: Any = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    extra = {"stdin": stdin} if stdin is not None else {}
    try:
        call_command(name, *args, stdout=out, stderr=err, **extra)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue() + str(exc)
    return 0, out.getvalue(), err.getvalue()


def source_of(alias: str) -> dict[str, Any]:
    return origin.source_header(alias)


@pytest.fixture
def two_databases(seeded: Any) -> None:
    seeded("default")
    seeded("second", SECOND_SIZE)


# -- the header ------------------------------------------------------------------------------------------
def test_the_header_records_the_database_identity_and_never_a_secret(seeded, backup_env):
    seeded()
    config = connections["default"].settings_dict
    saved = {key: config.get(key) for key in ("USER", "PASSWORD")}
    config.update(USER="backup-operator", PASSWORD="db-password-value")
    try:
        result = services.backup_create(compression="none")
    finally:
        config.update(saved)
    raw = Path(result.path).read_bytes()
    header = json.loads(raw.splitlines()[0])
    assert header["source"]["alias"] == "default"
    assert header["source"]["database"] == {"engine": "sqlite", "name": str(Path(config["NAME"]).resolve()),
                                            "host": None, "port": None}
    assert b"db-password-value" not in raw and b"backup-operator" not in raw
    entry = services.backup_list()[0]
    assert entry.belongs_to(origin.of_alias("default")) and not entry.belongs_to(origin.of_alias("second"))
    assert entry.as_dict()["origin"]["kind"] == origin.KNOWN


def test_identity_not_alias_decides_where_a_backup_belongs():
    here = origin.DatabaseIdentity(alias="adcp", engine="postgresql", name="adcp", host="db1", port="5432")
    same_elsewhere = {"alias": "default", "database": {"engine": "postgresql", "name": "adcp", "host": "db1",
                                                       "port": "5432"}}
    other_host = {"alias": "adcp", "database": {**same_elsewhere["database"], "host": "db2"}}
    assert origin.belongs_to(same_elsewhere, here)  # another project calls the same database "default"
    assert not origin.belongs_to(other_host, here)  # the same alias for another server is another database
    assert origin.belongs_to({"alias": "adcp", "engine": "postgresql"}, here)  # older files: by alias
    assert not origin.belongs_to({"alias": "default", "engine": "postgresql"}, here)
    assert not origin.belongs_to(None, here)  # unknown origin: the default database's only
    default = origin.DatabaseIdentity(alias="default", engine="sqlite", name="/x")
    assert origin.belongs_to(None, default) and origin.describe_source(None) == "origin unknown"


# -- latest, --max-age, prune ----------------------------------------------------------------------------
def test_latest_takes_the_newest_backup_of_the_database_given(two_databases, backup_env):
    mine = services.backup_create(database="default")
    theirs = services.backup_create(database="second")  # newer, in the same storage
    assert services.latest_backup_name(database="default") == mine.name
    assert services.latest_backup_name(database="second") == theirs.name

    before = table_state("default")
    code, out, err = run("backup_restore", "latest", "--database", "default", "--dry-run")
    assert code == 0, err
    assert f"Dry run (rolled back, nothing changed): {mine.name}" in out
    assert "taken from: sqlite database" in out and "(alias 'default')" in out
    assert table_state("default") == before
    code, out, err = run("backup_validate", "latest", "--database", "second", "--json")
    assert code == 0 and json.loads(out)["name"] == theirs.name


def test_max_age_counts_only_the_database_given(two_databases, backup_env):
    folder = backup_env / "backups"
    now = datetime.now(UTC)
    write_backup(folder, now - timedelta(hours=30), source=source_of("default"))
    services.backup_create(database="second")  # fresh, but of the other database
    code, _, message = run("backup_info", "--database", "default", "--max-age", "26h")
    assert code == 1 and "older than 26h" in message
    code, out, _ = run("backup_info", "--database", "second", "--max-age", "26h", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["backups"]["count"] == 1 and data["backups"]["other_databases"] == 1
    assert data["database"]["identity"] == origin.of_alias("second").as_header()


def test_prune_judges_only_the_database_given(two_databases, backup_env):
    folder = backup_env / "backups"
    now = datetime.now(UTC)
    mine = [write_backup(folder, now - timedelta(days=days), source=source_of("default")) for days in (1, 2, 3)]
    theirs = [write_backup(folder, now - timedelta(days=days), source=source_of("second")) for days in (4, 5)]
    legacy = write_backup(folder, now - timedelta(days=9), source={})  # origin unknown: the default's

    result = services.backup_prune(database="default", keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert [p.name for p in result.kept] == [mine[0]]
    assert sorted(p.name for p in result.removed) == sorted([*mine[1:], legacy])
    assert sorted(p.name for p in folder.glob("adcp-*")) == sorted([mine[0], *theirs])

    result = services.backup_prune(database="second", keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert [p.name for p in result.removed] == [theirs[1]]
    assert sorted(p.name for p in folder.glob("adcp-*")) == sorted([mine[0], theirs[0]])


def test_prune_leaves_backups_of_unknown_origin_alone_when_databases_share_the_storage(two_databases, backup_env,
                                                                                        settings):
    settings.ADCP_BACKUP_DATABASES = ["default", "second"]
    folder = backup_env / "backups"
    now = datetime.now(UTC)
    mine = [write_backup(folder, now - timedelta(days=days), source=source_of("default")) for days in (1, 2)]
    unknown = write_backup(folder, now - timedelta(days=9), source={})
    result = services.backup_prune(database="default", keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert [p.name for p in result.removed] == [mine[1]]
    assert (folder / unknown).exists()


# -- listing ---------------------------------------------------------------------------------------------
def test_backup_list_shows_the_database_given_unless_asked_for_all(two_databases, backup_env):
    mine = services.backup_create(database="default")
    theirs = services.backup_create(database="second")
    assert [e.name for e in services.backup_list(database="second")] == [theirs.name]
    code, out, _ = run("backup_list")
    assert code == 0 and mine.name in out and theirs.name not in out and "SOURCE" in out
    code, out, _ = run("backup_list", "--database", "second", "--json")
    data = json.loads(out)
    assert data["database"] == "second" and [b["name"] for b in data["backups"]] == [theirs.name]
    assert data["backups"][0]["origin"]["alias"] == "second"
    code, out, _ = run("backup_list", "--all-databases")
    assert mine.name in out and theirs.name in out and "(alias 'second')" in out


# -- restore across databases ----------------------------------------------------------------------------
def test_restoring_another_databases_backup_needs_the_explicit_option(two_databases, backup_env):
    theirs = services.backup_create(database="second")
    before = table_state("default")

    with pytest.raises(OtherDatabase, match="--from-other-database"):
        services.backup_restore(file=theirs.name, database="default")
    with pytest.raises(OtherDatabase, match="--from-other-database"):
        services.backup_restore_plan(file=theirs.name, database="default")
    code, _, message = run("backup_restore", theirs.name, "--force")
    assert code == 1 and "was taken from sqlite database" in message and "--from-other-database" in message
    code, _, message = run("backup_restore", theirs.name, "--dry-run")
    assert code == 1 and "--from-other-database" in message
    assert table_state("default") == before

    plan = services.backup_restore_plan(file=theirs.name, database="default", from_other_database=True)
    assert plan.other_database and plan.origin["alias"] == "second"
    code, _, err = run("backup_restore", theirs.name, "--from-other-database", stdin=io.StringIO("no\n"))
    assert code == 1 and "ANOTHER database than this one" in err and "(alias 'second')" in err
    assert table_state("default") == before

    code, out, err = run("backup_restore", theirs.name, "--from-other-database", "--force", "--no-safety-backup")
    assert code == 0, err
    assert "ANOTHER database" in out
    assert table_state("default") == table_state("second")


def test_a_legacy_file_of_unknown_origin_restores_anywhere_and_says_so(two_databases, backup_env):
    (backup_env / "backups").mkdir(exist_ok=True)
    legacy = write_v2(backup_env / "backups" / "adcp-legacy.json.gz", v2_document("default"))
    # It counts as the default database's (listing), but it is unsigned, so it never becomes anyone's `latest`.
    entry = next(e for e in services.backup_list() if e.name == legacy.name)
    assert entry.belongs_to(origin.of_alias("default")) and not entry.trusted
    assert services.latest_backup_name(database="default") is None
    assert services.latest_backup_name(database="second") is None
    result = services.backup_restore(file=legacy.name, database="second", dry_run=True)
    assert result.origin is not None and result.origin["kind"] == origin.UNKNOWN
    assert result.origin["other_database"] is False
    code, out, _ = run("backup_restore", legacy.name, "--database", "second", "--dry-run")
    assert code == 0 and "taken from: origin unknown" in out


def test_without_database_the_commands_use_the_first_configured_one(two_databases, backup_env, settings):
    settings.ADCP_BACKUP_DATABASES = ["second", "default"]
    code, out, err = run("backup_create", "--json")
    assert code == 0, err
    made = json.loads(out)
    assert made["counts"]["tenant"] == SECOND_SIZE.tenants
    assert services.latest_backup_name(database="second") == made["name"]
    code, out, _ = run("backup_info", "--json")
    assert json.loads(out)["database"]["alias"] == "second"


@pytest.mark.usefixtures("drill_dir")
def test_a_drill_takes_and_counts_for_its_own_database_only(two_databases, backup_env):
    theirs = services.backup_create(database="second")
    services.backup_create(database="default")  # newer, of the other database
    result = services.backup_drill(database="second")
    assert result.restorable and result.name == theirs.name
    assert not services.backup_info(database="second", max_drill_age=timedelta(hours=1)).drill["stale"]
    mine = services.backup_info(database="default", max_drill_age=timedelta(hours=1)).drill
    assert mine["stale"] and mine["last"] is None and mine["last_success"] is None
