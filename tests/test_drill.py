"""Restore drills: a backup restored into a scratch database of each engine, read back, compared, removed."""
from __future__ import annotations

import io
import json
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from adcp_backup import drill, services, signals
from adcp_backup.db import get_engine
from adcp_backup.exceptions import BackupConfigurationError, BackupError, BackupLocked

from . import forge
from .drill_fixtures import scratch_leftovers
from .helpers import engine_aliases, table_state
from .processes import database_url

pytestmark = [pytest.mark.engines, pytest.mark.django_db(transaction=True, databases="__all__")]


def sequences(alias: str) -> dict[str, int | None]:
    engine = get_engine(alias)
    return {spec: engine.get_sequence(spec) for spec in ("tenant", "product", "externalagent",
                                                          "product_embeddings")}


@pytest.mark.parametrize("alias", engine_aliases())
def test_a_good_backup_drills_with_counts_checksums_and_time(seeded, alias, drill_dir):
    counts = seeded(alias)
    backup = services.backup_create(database=alias)
    live = connections[alias]
    live.ensure_connection()
    raw_before = live.connection
    state_before = table_state(alias)
    sequences_before = sequences(alias)
    settings_before = dict(connections.settings[alias])

    out, err = io.StringIO(), io.StringIO()
    call_command("backup_drill", "latest", "--database", alias, "--json", stdout=out, stderr=err)
    result = orjson.loads(out.getvalue())

    assert result["restorable"] is True and result["problems"] == []
    assert result["name"] == backup.name and result["engine"] == live.vendor
    assert {t: c["rows_restored"] for t, c in result["tables"].items()} == {t: n for t, n in counts.items()
                                                                           if t in result["tables"]}
    for table, check in result["tables"].items():
        assert check["rows_in_file"] == check["rows_restored"] == backup.counts[table]
        assert check["compared"] == "exact"
        assert check["checksum_restored"] == check["checksum_in_file"]  # the backup's own checksum, recomputed
        assert check["matches"] is True
    assert result["checks"]["counts"] and result["checks"]["checksums"] and result["checks"]["foreign_keys"]
    if live.vendor == "sqlite":
        assert result["checks"]["fts"] is True
    assert result["restore_seconds"] > 0 and result["duration"] >= result["restore_seconds"]
    assert result["peak_memory_bytes"] > 0

    # The live database: same rows, same sequences, the same connection, and no scratch database left.
    assert table_state(alias) == state_before
    assert sequences(alias) == sequences_before
    assert live.connection is raw_before and not live.in_atomic_block
    assert dict(connections.settings[alias]) == settings_before
    assert not [a for a in connections.settings if a.startswith(drill.DATABASE_PREFIX)]
    assert scratch_leftovers(alias) == []
    assert drill.read_state()["last_success"]["name"] == backup.name


@pytest.mark.parametrize("alias", [a for a in engine_aliases() if a != "postgresql"])  # PostgreSQL stores NaN
def test_a_drill_reports_a_row_that_does_not_restore_by_table_and_row(seeded, backup_env, drill_dir, alias):
    seeded(alias)
    good = services.backup_create(database=alias, compression="none")
    source = Path(good.path)

    def nan_price(lines: list[Any]) -> list[Any]:
        table = None
        row_number = 0
        for line in lines:
            if isinstance(line, dict) and line.get("kind") == "table":
                table, row_number = line["name"], 0
                price = [c["name"] for c in line["columns"]].index("price_cpm") if table == "product" else None
            elif isinstance(line, list) and table == "product":
                row_number += 1
                if row_number == 7:
                    line[price] = {"$float": "nan"}
        return lines

    bad = forge.forge(source, backup_env / "nan.jsonl", nan_price)
    assert services.backup_validate(file=str(bad)).valid  # a valid file...
    state_before = table_state(alias)
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("backup_drill", str(bad), "--database", alias, "--json", stdout=out, stderr=io.StringIO())
    assert raised.value.returncode == 2  # ...that does not restore
    result = orjson.loads(out.getvalue())
    assert result["restorable"] is False
    assert result["problems"][0]["section"] == "product" and result["problems"][0]["row"] == 7
    assert table_state(alias) == state_before
    assert scratch_leftovers(alias) == []
    assert drill.read_state()["last"]["restorable"] is False


def test_a_drill_that_cannot_run_raises_and_is_recorded(backup_env, drill_dir):
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("backup_drill", "--json", stdout=out, stderr=io.StringIO())
    assert raised.value.returncode == 1
    assert "no backup" in orjson.loads(out.getvalue())["error"]
    assert drill.read_state()["last"]["restorable"] is False
    assert "last_success" not in drill.read_state()


@pytest.fixture
def celery_drill(broker: str, celery_processes: Any) -> tuple[str, Any]:
    return broker, celery_processes


@pytest.fixture
def drill_signals() -> Any:
    received: list[tuple[str, dict[str, Any]]] = []

    def finished(sender: Any, **kwargs: Any) -> None:
        received.append(("finished", kwargs))

    def failed(sender: Any, **kwargs: Any) -> None:
        received.append(("failed", kwargs))

    signals.drill_finished.connect(finished)
    signals.drill_failed.connect(failed)
    yield received
    signals.drill_finished.disconnect(finished)
    signals.drill_failed.disconnect(failed)


def test_signals_and_the_admins_mail(seeded, backup_env, drill_dir, drill_signals, settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.ADCP_BACKUP_NOTIFY_ADMINS = True
    seeded("default")
    good = services.backup_create(database="default", compression="none")
    services.backup_drill(file=good.name)
    assert drill_signals[-1][0] == "finished" and drill_signals[-1][1]["result"].restorable
    assert mail.outbox == []

    def drop_a_tenant(lines: list[Any]) -> list[Any]:  # its products now point at nothing
        kept = [line for line in lines if not (isinstance(line, list) and line[0] == 1 and lines.index(line) < 8)]
        header = forge.header(kept)
        header["counts"] = {**header["counts"], "tenant": header["counts"]["tenant"] - 1}
        return kept

    bad = forge.forge(Path(good.path), backup_env / "orphans.jsonl", drop_a_tenant)
    result = services.backup_drill(file=str(bad), )
    assert not result.restorable
    kind, named = drill_signals[-1]
    assert kind == "failed" and named["result"] is result and named["exception"] is None
    assert result.problems[0].section == "product"  # the file is consistent; its products' tenant is gone
    assert len(mail.outbox) == 1 and "Restore drill failed" in mail.outbox[0].subject
    assert str(result.problems[0]) in mail.outbox[0].body

    settings.ADCP_BACKUP_NOTIFY_ADMINS = False
    with pytest.raises(BackupConfigurationError):
        services.backup_drill(database="nope")
    assert drill_signals[-1][0] == "failed" and isinstance(drill_signals[-1][1]["exception"],
                                                           BackupConfigurationError)
    assert len(mail.outbox) == 1


def test_a_tenant_backup_drills_into_an_empty_scratch_database(seeded, backup_env, drill_dir):
    seeded("default")
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT slug FROM tenant ORDER BY id LIMIT 1 OFFSET 1")
        slug = cursor.fetchone()[0]
    backup = services.backup_create(database="default", tenants=[slug])
    result = services.backup_drill(file=backup.name)
    assert result.restorable, result.problems
    assert {t: c.rows_restored for t, c in result.tables.items() if c.rows_restored} == \
        {t: n for t, n in backup.counts.items() if n}
    assert result.tables["tenant"].rows_restored == 1
    out = io.StringIO()
    call_command("backup_drill", backup.name, stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert f"{backup.name} restores." in text and "Restore time:" in text and "exact ok" in text


def test_an_encrypted_backup_drills_with_the_configured_identity(seeded, backup_env, drill_dir, settings):
    pyrage = pytest.importorskip("pyrage")
    identity = pyrage.x25519.Identity.generate()
    key_file = backup_env / "identity.txt"
    key_file.write_text(str(identity) + "\n")
    settings.ADCP_BACKUP_AGE_RECIPIENTS = [str(identity.to_public())]
    seeded("default")
    backup = services.backup_create(database="default", encrypt=True)
    with pytest.raises(BackupError):
        services.backup_drill(file=backup.name)  # no identity: the drill cannot run
    settings.ADCP_BACKUP_AGE_IDENTITY = str(key_file)
    result = services.backup_drill(file=backup.name)
    assert result.restorable and result.tables["product"].rows_restored == backup.counts["product"]


def test_a_legacy_file_drills(seeded, backup_env, drill_dir):
    from .legacy_fixtures import seed_legacy_source, v2_document, write_v2

    seed_legacy_source(seeded)
    path = write_v2(backup_env / "comprehensive_backup_20250902_174646.json.gz", v2_document())
    result = services.backup_drill(file=str(path))
    assert result.restorable, result.problems
    assert result.format.startswith("legacy")
    assert all(check.compared == "normalized" and check.matches for check in result.tables.values())
    assert result.tables["product"].rows_restored == 60


def test_a_drill_leaves_backups_and_restores_free_to_run(seeded, backup_env, drill_dir):
    """The drill holds its own lock, not the backup lock: a backup can run while a drill holds it."""
    seeded("default")
    services.backup_create(database="default")
    with drill._drill_lock():
        assert services.backup_create(database="default").name
        with pytest.raises(BackupLocked):
            services.backup_drill()  # but never two drills at once


@pytest.fixture
def limited_postgresql_role(drill_dir: Path) -> Any:
    """A PostgreSQL role without CREATEDB, as an extra database alias; call with may_create_schema."""
    if "postgresql" not in connections.settings:
        pytest.skip("no PostgreSQL URL")
    made: list[str] = []
    database = connections.settings["postgresql"]["NAME"]

    def make(*, may_create_schema: bool) -> str:
        role = f"adcp_drill_role_{len(made)}"
        with connections["postgresql"].cursor() as cursor:
            cursor.execute(f"DROP ROLE IF EXISTS {role}")
            cursor.execute(f"CREATE ROLE {role} LOGIN NOCREATEDB PASSWORD 'drill'")
            if may_create_schema:
                cursor.execute(f'GRANT CREATE ON DATABASE "{database}" TO {role}')
        alias = f"{drill.DATABASE_PREFIX}limited_{len(made)}"
        connections.settings[alias] = {**connections.settings["postgresql"], "USER": role, "PASSWORD": "drill",
                                       "HOST": "127.0.0.1"}
        made.append(alias)
        return alias

    yield make
    for number, alias in enumerate(made):
        connections[alias].close()
        connections.settings.pop(alias, None)
        with connections["postgresql"].cursor() as cursor:
            cursor.execute(f'REVOKE ALL ON DATABASE "{database}" FROM adcp_drill_role_{number}')
            cursor.execute(f"DROP ROLE IF EXISTS adcp_drill_role_{number}")


def test_without_createdb_postgresql_drills_in_a_temporary_schema(seeded, backup_env, limited_postgresql_role):
    counts = seeded("postgresql")
    backup = services.backup_create(database="postgresql")
    state_before = table_state("postgresql")
    alias = limited_postgresql_role(may_create_schema=True)
    result = services.backup_drill(file=backup.name, database=alias)
    assert result.restorable, result.problems
    assert result.scratch["kind"] == "schema"
    assert {t: c.rows_restored for t, c in result.tables.items()} == {t: counts[t] for t in result.tables}
    assert table_state("postgresql") == state_before
    assert scratch_leftovers("postgresql") == []


def test_a_schema_can_be_chosen_as_the_postgresql_scratch(seeded, backup_env, drill_dir, settings):
    if "postgresql" not in connections.settings:
        pytest.skip("no PostgreSQL URL")
    seeded("postgresql")
    backup = services.backup_create(database="postgresql")

    def live_schema() -> list[tuple[Any, ...]]:
        with connections["postgresql"].cursor() as cursor:
            cursor.execute("SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
                           "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1, 2")
            return cursor.fetchall()

    schema_before, state_before = live_schema(), table_state("postgresql")
    settings.ADCP_BACKUP_DRILL_POSTGRESQL_SCRATCH = "schema"
    result = services.backup_drill(file=backup.name, database="postgresql")
    assert result.restorable and result.scratch["kind"] == "schema"
    assert live_schema() == schema_before and table_state("postgresql") == state_before
    assert scratch_leftovers("postgresql") == []
    settings.ADCP_BACKUP_DRILL_POSTGRESQL_SCRATCH = "tablespace"
    with pytest.raises(BackupConfigurationError, match="must be database or schema"):
        services.backup_drill(file=backup.name, database="postgresql")


def test_without_any_grant_the_drill_names_the_missing_one(seeded, backup_env, limited_postgresql_role):
    seeded("postgresql")
    backup = services.backup_create(database="postgresql")
    alias = limited_postgresql_role(may_create_schema=False)
    with pytest.raises(BackupConfigurationError, match="needs the CREATEDB privilege"):
        services.backup_drill(file=backup.name, database=alias)
    assert scratch_leftovers("postgresql") == []


@pytest.mark.skipif("mysql" not in engine_aliases(), reason="no MariaDB URL")
def test_a_mariadb_user_without_create_gets_the_grant_named(seeded, backup_env, drill_dir):
    seeded("mysql")
    backup = services.backup_create(database="mysql")
    database = connections.settings["mysql"]["NAME"]
    with connections["mysql"].cursor() as cursor:
        cursor.execute("DROP USER IF EXISTS 'adcp_drill_nogrant'@'%'")
        cursor.execute("CREATE USER 'adcp_drill_nogrant'@'%' IDENTIFIED BY 'drill'")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{database}`.* TO 'adcp_drill_nogrant'@'%'")
    alias = f"{drill.DATABASE_PREFIX}nogrant"
    connections.settings[alias] = {**connections.settings["mysql"], "USER": "adcp_drill_nogrant",
                                   "PASSWORD": "drill", "HOST": "127.0.0.1"}
    try:
        with pytest.raises(BackupConfigurationError, match="needs CREATE and DROP on databases named adcp_drill_"):
            services.backup_drill(file=backup.name, database=alias)
    finally:
        connections[alias].close()
        connections.settings.pop(alias)
        with connections["mysql"].cursor() as cursor:
            cursor.execute("DROP USER IF EXISTS 'adcp_drill_nogrant'@'%'")
    assert scratch_leftovers("mysql") == []


# -- in other processes: a killed drill, a Celery beat schedule -------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("alias", engine_aliases())
def test_a_killed_drill_leaves_a_leftover_that_the_next_drill_removes(adcp_schema, alias, tmp_path, drill_dir):
    from .scheduling_fixtures import manage, project_env, start_manage

    adcp_schema(alias)
    env = project_env(tmp_path, DATABASE_URL=database_url(alias), ADCP_BACKUP_DRILL_DIR=str(drill_dir))
    seeded = manage("adcp_demo", "--products", "30000", "--embeddings", "10", "--dim", "8", env=env, cwd=tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    made = manage("backup_create", "--compression", "none", env=env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    state_before = table_state(alias)

    running = start_manage("backup_drill", "-v0", env=env, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not scratch_leftovers(alias, running.pid) and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert running.poll() is None, "the drill ended before it could be killed"
    running.send_signal(signal.SIGKILL)
    running.wait(30)
    leftovers = scratch_leftovers(alias, running.pid)
    assert leftovers and all(str(running.pid) in name for name in leftovers)

    again = manage("backup_drill", "--json", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["restorable"] is True
    assert sorted(Path(name).name for name in result["leftovers_removed"]) == leftovers
    assert scratch_leftovers(alias, running.pid) == []
    assert table_state(alias) == state_before


@pytest.mark.slow
def test_sigterm_stops_a_drill_and_removes_its_scratch_database(adcp_schema, tmp_path, drill_dir):
    from .scheduling_fixtures import manage, project_env, start_manage

    adcp_schema("default")
    env = project_env(tmp_path, DATABASE_URL=database_url("default"), ADCP_BACKUP_DRILL_DIR=str(drill_dir))
    assert manage("adcp_demo", "--products", "30000", "--embeddings", "10", "--dim", "8", env=env,
                  cwd=tmp_path).returncode == 0
    assert manage("backup_create", env=env, cwd=tmp_path).returncode == 0
    running = start_manage("backup_drill", "-v0", env=env, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not scratch_leftovers("default") and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert running.poll() is None, "the drill ended before it could be stopped"
    running.send_signal(signal.SIGTERM)
    _out, err = running.communicate(timeout=60)
    assert running.returncode == 1
    assert "The drill was interrupted; its scratch database was removed." in err and "Traceback" not in err
    assert scratch_leftovers("default") == []


@pytest.mark.slow
def test_a_beat_schedule_runs_a_drill_and_monitoring_sees_it(tmp_path, drill_dir, celery_drill):
    from .scheduling_fixtures import manage, project_env, wait_for

    broker_address, processes_for = celery_drill
    env = project_env(tmp_path, CELERY_BROKER_URL=broker_address, ADCP_BACKUP_SCHEDULE="",
                      ADCP_BACKUP_PRUNE_SCHEDULE="", ADCP_BACKUP_DRILL_SCHEDULE="@every 3s",
                      ADCP_BACKUP_DRILL_DIR=str(drill_dir))
    assert manage("adcp_demo", "--products", "200", "--embeddings", "10", "--dim", "8", env=env,
                  cwd=tmp_path).returncode == 0
    made = manage("backup_create", "--json", env=env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    before = manage("backup_info", "--max-drill-age", "1h", "--json", env=env, cwd=tmp_path)
    assert before.returncode == 1
    assert "No restore drill succeeded" in before.stderr
    processes = processes_for(env)
    logs = [processes.worker(), processes.beat()]
    state = tmp_path / "backups" / drill.STATE_FILE_NAME

    def drilled() -> bool:
        return state.exists() and "last_success" in json.loads(state.read_text())

    wait_for(drilled, 120, "a scheduled drill recorded as successful", logs)
    processes.stop()
    assert "Sending due task adcp-backup-drill (adcp_backup.drill)" in logs[1].read_text()
    after = manage("backup_info", "--max-drill-age", "1h", "--json", env=env, cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    info = json.loads(after.stdout)["drill"]
    assert info["stale"] is False and info["last_success"]["name"] == json.loads(made.stdout)["name"]
    assert info["last_success"]["counts"]["product"] == 200
    text = manage("backup_info", env=env, cwd=tmp_path).stdout
    assert f"Last successful drill: {json.loads(made.stdout)['name']}" in text
    assert list(drill_dir.glob("*")) == []


@pytest.mark.parametrize("alias", engine_aliases())
def test_verify_names_each_row_that_differs_from_the_file(seeded, alias, backup_env):
    """The read-back compares the backup's own checksums, then row by row: pointed at a database whose rows
    were changed after the backup, it names every changed, missing and extra row with its row in the file."""
    from adcp_backup.services import _opened, _resolve

    seeded(alias)
    backup = services.backup_create(database=alias)
    with connections[alias].cursor() as cursor:
        cursor.execute("UPDATE product SET name = 'changed' WHERE id = 5")
        cursor.execute("DELETE FROM product_embeddings WHERE id = 3")
    source = _resolve(backup.name)
    with _opened(source, strict=False) as reader:
        header = reader.header
    tables, problems = drill.verify(get_engine(alias), lambda: _opened(source, strict=False), header,
                                    progress=lambda event: None)
    assert [(p.section, p.row, p.message) for p in problems] == [
        ("product", 5, "id 5: the restored row differs from the backup's"),
        ("product_embeddings", 3, "id 3: missing from the restored table"),
        ("product_embeddings", None, f"the backup holds {backup.counts['product_embeddings']} rows, "
                                     f"the restored table {backup.counts['product_embeddings'] - 1}"),
    ]
    assert not tables["product"].matches and tables["product"].checksum_restored != tables["product"].checksum_in_file
    assert tables["tenant"].matches and tables["tenant"].checksum_restored == backup_checksum(backup, "tenant")


def backup_checksum(backup: Any, table: str) -> str:
    lines = forge.read_lines(backup.path)
    return next(line["sha256"] for line in lines if isinstance(line, dict) and line.get("kind") == "table_end"
                and line.get("name") == table)
