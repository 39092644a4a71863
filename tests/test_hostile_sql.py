"""Hostile backups with valid checksums: SQL in the header's DDL, quotes and SQL in names, unknown tables and
columns. backup_validate names the problem and exits 2; a restore, a dry run, a tenant restore and a restore
into an empty database refuse it, and nothing changes: not the AdCP tables, not the Django tables, not the
file system, not the database server."""
from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connections

from adcp_backup import dataset, services
from adcp_backup.db import get_engine

from . import forge
from .helpers import drop_schema, engine_params, table_state

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


@dataclass
class Traps:
    """Places an attack would leave a trace in: a file ATTACH DATABASE or INTO OUTFILE would write, and a file a
    program run by the database server (COPY ... TO PROGRAM) would create. The folder is writable by the server."""

    folder: Path

    @property
    def attached(self) -> Path:
        return self.folder / "attached.sqlite3"

    @property
    def outfile(self) -> Path:
        return self.folder / "outfile.txt"

    @property
    def marker(self) -> Path:
        return self.folder / "program-ran"

    def sprung(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir())


@pytest.fixture
def traps() -> Any:
    folder = Path(tempfile.mkdtemp(prefix="adcp-hostile-", dir="/tmp"))
    folder.chmod(0o777)  # the database server runs as another user
    yield Traps(folder)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


def run(*args: str) -> tuple[int, dict[str, Any]]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, "--json", stdout=out, stderr=err)
        code = 0
    except CommandError as exc:
        code = exc.returncode
    return code, json.loads(out.getvalue())


def outside(alias: str) -> dict[str, Any]:
    """Everything an attack through a restore could reach besides the AdCP rows: every table of the database,
    the users and their privileges, triggers and (on SQLite) every schema object, attached databases."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        state: dict[str, Any] = {"tables": sorted(connection.introspection.table_names(cursor))}
        cursor.execute("SELECT id, username, password, is_superuser, is_staff, is_active FROM auth_user ORDER BY id")
        state["auth_user"] = [tuple(row) for row in cursor.fetchall()]
        if connection.vendor == "sqlite":
            cursor.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
            state["schema"] = [tuple(row) for row in cursor.fetchall()]
            cursor.execute("PRAGMA database_list")
            # "temp" appears once a dry run has made its temporary copies; anything else was attached
            state["databases"] = [row[1] for row in cursor.fetchall() if row[1] != "temp"]
        elif connection.vendor == "postgresql":
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1")
            state["triggers"] = [row[0] for row in cursor.fetchall()]
            cursor.execute("SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                           "WHERE n.nspname = 'public' ORDER BY 1")
            state["functions"] = [row[0] for row in cursor.fetchall()]
        else:
            cursor.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                           "WHERE TRIGGER_SCHEMA = DATABASE() ORDER BY 1")
            state["triggers"] = [row[0] for row in cursor.fetchall()]
    return state


# -- the attacks -------------------------------------------------------------------------------------------
Edit = Callable[[list[forge.Line]], list[forge.Line]]


def hostile_ddl(vendor: str, traps: Traps) -> list[str]:
    """Statements that, executed, make a user superuser, plant a trigger carried into later backups, and reach
    the file system or the server's shell."""
    promote = "UPDATE auth_user SET is_superuser = 1, is_staff = 1"
    if vendor == "sqlite":
        return [promote,
                "CREATE TRIGGER carried AFTER INSERT ON tenant BEGIN UPDATE auth_user SET is_superuser = 1; END",
                f"ATTACH DATABASE '{traps.attached}' AS loot",
                "CREATE TABLE loot.stolen AS SELECT username, password FROM auth_user"]
    if vendor == "postgresql":
        return ["UPDATE auth_user SET is_superuser = true, is_staff = true",
                f"COPY (SELECT 1) TO PROGRAM 'touch {traps.marker}'",
                "CREATE FUNCTION promote() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN UPDATE auth_user SET is_superuser = true; RETURN NEW; END $$",
                "CREATE TRIGGER carried AFTER INSERT ON tenant FOR EACH ROW EXECUTE FUNCTION promote()"]
    return [promote,
            "CREATE TRIGGER carried AFTER INSERT ON tenant FOR EACH ROW UPDATE auth_user SET is_superuser = 1",
            f"SELECT username, password FROM auth_user INTO OUTFILE '{traps.outfile}'"]


def _schema(lines: list[forge.Line]) -> dict[str, Any]:
    return forge.header(lines)["schema"]


def _table_at(lines: list[forge.Line], name: str) -> int:
    return next(i for i, line in enumerate(lines)
                if isinstance(line, dict) and line.get("kind") == "table" and line.get("name") == name)


def extra_ddl(vendor: str, traps: Traps) -> Edit:
    def edit(lines: list[forge.Line]) -> list[forge.Line]:
        _schema(lines)["ddl"].extend(hostile_ddl(vendor, traps))
        return lines
    return edit


def smuggled_into_a_shipped_statement(vendor: str, traps: Traps) -> Edit:
    def edit(lines: list[forge.Line]) -> list[forge.Line]:
        ddl = _schema(lines)["ddl"]
        ddl[0] = ddl[0] + ";\n" + hostile_ddl(vendor, traps)[0]
        return lines
    return edit


def renamed_column(table: str, old: str, new: str, *, in_header: bool = False) -> Edit:
    def edit(lines: list[forge.Line]) -> list[forge.Line]:
        record = lines[_table_at(lines, table)]
        assert isinstance(record, dict)
        for column in record["columns"]:
            if column["name"] == old:
                column["name"] = new
        if in_header:
            for column in _schema(lines)["tables"][table]:
                if column["name"] == old:
                    column["name"] = new
        return lines
    return edit


def renamed_table(old: str, new: str, *, in_header: bool = False) -> Edit:
    def edit(lines: list[forge.Line]) -> list[forge.Line]:
        for line in lines:
            if isinstance(line, dict) and line.get("kind") in ("table", "table_end") and line.get("name") == old:
                line["name"] = new
        if in_header:
            tables = _schema(lines)["tables"]
            tables[new] = tables.pop(old)
            forge.header(lines)["counts"][new] = forge.header(lines)["counts"].pop(old)
        return lines
    return edit


def added_table(*, in_header: bool) -> Edit:
    """A table the registry does not have, with rows: a superuser for the attacker."""
    columns = [{"name": "id", "family": "integer", "nullable": False},
               {"name": "username", "family": "text", "nullable": False},
               {"name": "is_superuser", "family": "boolean", "nullable": False}]

    def edit(lines: list[forge.Line]) -> list[forge.Line]:
        at = _table_at(lines, "externalagent")
        lines[at:at] = [{"kind": "table", "name": "auth_user", "columns": columns}, [1, "mallory", True],
                        {"kind": "table_end", "name": "auth_user"}]
        if in_header:
            _schema(lines)["tables"]["auth_user"] = columns
        return lines
    return edit


def added_column(table: str, name: str, family: str, value: Any) -> Edit:
    def edit(lines: list[forge.Line]) -> list[forge.Line]:
        at = _table_at(lines, table)
        record = lines[at]
        assert isinstance(record, dict)
        record["columns"].append({"name": name, "family": family, "nullable": True})
        for line in lines[at + 1:]:
            if not isinstance(line, list):
                break
            line.append(value)
        return lines
    return edit


CASES: dict[str, tuple[Callable[[str, Traps], Edit], str]] = {
    "extra DDL in the header": (extra_ddl, "is not part of the AdCP"),
    "SQL appended to a shipped DDL statement": (smuggled_into_a_shipped_statement, "is not part of the AdCP"),
    "column name closing its quotes": (lambda v, t: renamed_column("tenant", "name", 'name") SELECT password '
                                                                   'FROM auth_user --'), "unknown column"),
    "column name quoted in advance": (lambda v, t: renamed_column("tenant", "name", '"name"'), "unknown column"),
    "column name that reads a program": (lambda v, t: renamed_column(
        "product", "description", f"description) FROM PROGRAM 'touch {t.marker}' --", in_header=True),
        "unknown column"),
    "column name in another case": (lambda v, t: renamed_column("tenant", "slug", "Slug"), "unknown column"),
    "table name with SQL": (lambda v, t: renamed_table("externalagent", 'externalagent"; DELETE FROM auth_user; --',
                                                       in_header=True), "unknown table"),
    "unknown table with rows": (lambda v, t: added_table(in_header=False), "unknown table"),
    "unknown table in the header too": (lambda v, t: added_table(in_header=True), "unknown table"),
    "unknown column with values": (lambda v, t: added_column("tenant", "is_superuser", "boolean", True),
                                   "unknown column"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("alias", engine_params())
def test_a_hostile_file_is_invalid_and_every_restore_refuses_it(seeded, backup_env, traps, alias, case):
    seeded(alias)
    vendor = connections[alias].vendor
    get_user_model().objects.db_manager(alias).create_user("mallory", password="not a superuser")
    made = services.backup_create(database=alias, compression="none")
    attack, needle = CASES[case]
    hostile = forge.forge(made.path, backup_env / "hostile.jsonl", attack(vendor, traps))
    with connections[alias].cursor() as cursor:
        cursor.execute("UPDATE product SET name = 'after the backup' WHERE id < 5")
    rows, world = table_state(alias), outside(alias)
    settings_file = backup_env / "data" / "app_settings.json"
    settings_bytes = settings_file.read_bytes()

    code, report = run("backup_validate", str(hostile))
    assert code == 2 and not report["valid"]
    assert any(needle in p["message"] for p in report["problems"]), report["problems"]

    for options in (["--force"], ["--dry-run"], ["--force", "--skip-validation"],
                    ["--force", "--tenant", "publisher-2"], ["--dry-run", "--tenant", "publisher-2"]):
        code, answer = run("backup_restore", str(hostile), "--database", alias, "--no-safety-backup", *options)
        assert code == 2, (options, answer)
        assert needle in json.dumps(answer), (options, answer)
        assert table_state(alias) == rows, options
        assert outside(alias) == world, options
    assert settings_file.read_bytes() == settings_bytes
    assert traps.sprung() == []
    assert not any(entry.purpose == "safety" for entry in services.backup_list())

    # Into a database without the AdCP tables, where a restore once replayed the header's DDL.
    drop_schema(alias)
    world = outside(alias)
    for options in (["--force", "--create-schema"], ["--force"], ["--dry-run", "--create-schema"]):
        code, answer = run("backup_restore", str(hostile), "--database", alias, *options)
        refused_as_a_dry_run = vendor == "mysql" and "--dry-run" in options and "commits DDL" in answer["error"]
        assert code == 2 or refused_as_a_dry_run, (options, answer)
        assert not set(dataset.table_names()) & get_engine(alias).existing_tables(), options
        assert outside(alias) == world, options
    assert traps.sprung() == []


@pytest.mark.parametrize("alias", engine_params())
def test_the_traps_would_catch_the_attacks_if_they_ran(seeded, traps, alias):
    """The statements above do harm when executed: the absence of their traces above means they never ran."""
    seeded(alias)
    vendor = connections[alias].vendor
    user = get_user_model().objects.db_manager(alias).create_user("mallory", password="not a superuser")
    before = outside(alias)
    statements = hostile_ddl(vendor, traps)
    if vendor == "mysql":
        statements = statements[:2]  # INTO OUTFILE depends on the server's secure_file_priv
    with connections[alias].cursor() as cursor:
        for statement in statements:
            cursor.execute(statement.replace("%", "%%"))
        if vendor == "sqlite":
            cursor.execute("DETACH DATABASE loot")
    after = outside(alias)
    assert after != before
    assert get_user_model().objects.db_manager(alias).get(pk=user.pk).is_superuser
    if vendor == "sqlite":
        assert traps.attached.exists()
    if vendor == "postgresql":
        assert traps.marker.exists()
    with connections[alias].cursor() as cursor:
        cursor.execute("DROP TRIGGER carried" + (" ON tenant" if vendor == "postgresql" else ""))
        if vendor == "postgresql":
            cursor.execute("DROP FUNCTION promote()")


@pytest.mark.parametrize("alias", engine_params())
def test_real_backups_of_the_shipped_schema_validate(seeded, alias):
    """The header's DDL check knows every engine's own spelling of the shipped schema."""
    seeded(alias)
    for compression in ("none", "gzip"):
        made = services.backup_create(database=alias, compression=compression)
        report = services.backup_validate(file=made.name)
        assert report.valid, report.problems
    tenant = services.backup_create(database=alias, tenants=["publisher-1"], with_global=["externalagent"])
    assert services.backup_validate(file=tenant.name).valid


def test_a_validation_problem_names_a_hostile_name_safely(seeded, backup_env):
    seeded()
    made = services.backup_create(compression="none")
    name = "name\x1b[2J\nforged line"
    hostile = forge.forge(made.path, backup_env / "hostile.jsonl", renamed_column("tenant", "name", name))
    report = services.backup_validate(file=str(hostile))
    messages = [p.message for p in report.problems]
    assert any("unknown column 'name\\x1b[2J\\nforged line'" in m for m in messages), messages
    assert not any("\n" in m or "\x1b" in m for m in messages)


def test_the_ddl_comparison_ignores_layout_and_quoting_only():
    from adcp_backup.validation import ddl_problems

    relaid = ('CREATE   INDEX "idx_product_embeddings_current"\nON product_embeddings(provider,model,is_stale) '
              "WHERE is_stale = 0;")
    assert ddl_problems("sqlite", [relaid]) == []
    assert ddl_problems("sqlite", [relaid.replace("is_stale = 0", "is_stale = 1")])
    assert ddl_problems("sqlite", [relaid + " -- a comment\n; DELETE FROM auth_user"])
    assert ddl_problems("postgresql", ["CREATE SEQUENCE tenant_id_seq AS integer; DROP TABLE auth_user"])
    assert ddl_problems("oracle", ["CREATE TABLE tenant (id int)"])
    assert ddl_problems("sqlite", "CREATE TABLE tenant (id int)")  # a string, not a list of statements
