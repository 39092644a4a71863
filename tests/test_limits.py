"""Values an engine refuses (infinities, NaN, text too long for its column, NUL in PostgreSQL text, ...): found by
validation before anything is written, named in one sentence by a restore, and the database left unchanged."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from adcp_backup import dataset, services
from adcp_backup.db import get_engine
from adcp_backup.db.base import split_sql
from adcp_backup.db.limits import DEFAULT_MAX_ALLOWED_PACKET, ValueLimits, column_rules, shipped_types
from adcp_backup.exceptions import RestoreError, ValuesRefused

from . import forge
from .helpers import drop_schema, engine_aliases, table_state

MYSQL = "mysql" in engine_aliases()
POSTGRESQL = "postgresql" in engine_aliases()
needs_mysql = pytest.mark.skipif(not MYSQL, reason="needs ADCP_TEST_MYSQL_URL")
LEGACY_MYSQL_DDL = Path(__file__).with_name("legacy_schema_mysql.sql")
all_databases = pytest.mark.django_db(transaction=True, databases="__all__")


# -- the rules, without a database ---------------------------------------------------------------------------
def problems_of(engine: str, declared: dict[str, str], rows: list[list[Any]], **kwargs: Any) -> list[str]:
    limits = ValueLimits(engine, "t", list(declared), declared, **kwargs)
    return [f"{p.row} {p.message}" for p in limits.check(rows, 1)]


def test_mariadb_refuses_infinities_and_nan_and_nothing_else_in_a_double():
    rows = [[1.5], [math.inf], [None], [-math.inf], [math.nan], [1e308], [7]]
    assert problems_of("mysql", {"price_cpm": "double"}, rows) == [
        "2 price_cpm is inf, which MariaDB cannot store (it has no infinities or NaN)",
        "4 price_cpm is -inf, which MariaDB cannot store (it has no infinities or NaN)",
        "5 price_cpm is nan, which MariaDB cannot store (it has no infinities or NaN)",
    ]
    assert problems_of("postgresql", {"price_cpm": "double precision"}, rows) == []
    assert problems_of("sqlite", {"price_cpm": "FLOAT"}, rows) == []


def test_varchar_counts_characters_and_text_counts_utf8_bytes():
    declared = {"slug": "varchar(100)", "description": "text"}
    rows = [["a" * 100, "é" * 32767], ["😀" * 101, "é" * 32768], [None, "a" * 65536]]
    assert problems_of("mysql", declared, rows) == [
        "2 slug holds 101 characters, more than the 100 of MariaDB's VARCHAR(100) column",
        "2 description holds 65536 bytes, more than the 65535 of MariaDB's TEXT column",
        "3 description holds 65536 bytes, more than the 65535 of MariaDB's TEXT column",
    ]
    assert problems_of("mysql", {"slug": "varchar(768)", "description": "longtext"}, rows) == []
    assert problems_of("postgresql", {"slug": "character varying(100)"}, [["x" * 101]]) == [
        "1 slug holds 101 characters, more than the 100 of PostgreSQL's CHARACTER VARYING(100) column"]


def test_integers_beyond_the_column_range_are_refused_on_every_engine():
    rows = [[2**31 - 1], [2**31], [-(2**31) - 1], [2**63]]
    assert [p.split()[0] for p in problems_of("mysql", {"dim": "int(11)"}, rows)] == ["2", "3", "4"]
    assert [p.split()[0] for p in problems_of("postgresql", {"dim": "integer"}, rows)] == ["2", "3", "4"]
    assert [p.split()[0] for p in problems_of("sqlite", {"dim": "INTEGER"}, rows)] == ["4"]
    assert problems_of("mysql", {"enabled": "tinyint(1)"}, [[True], [False]]) == []


def test_mariadb_datetime_takes_iso_text_and_refuses_what_it_cannot_read():
    rows = [["2024-02-29 23:59:59.123456"], ["2024-01-31T10:00:00+00:00"], ["2023-02-29 00:00:00"],
            ["10000-01-01 00:00:00"], ["2024-01-01T10:00:00+05:00"], ["yesterday"], ["2024-04-31"], ["2024-06-30"]]
    assert [p.split()[0] for p in problems_of("mysql", {"created_at": "datetime(6)"}, rows)] == ["3", "4", "5", "6",
                                                                                                  "7"]
    assert problems_of("postgresql", {"created_at": "timestamp without time zone"}, rows) == []


def test_postgresql_text_refuses_the_nul_character():
    rows = [["fine"], ["nul\x00inside"], [None]]
    assert problems_of("postgresql", {"description": "text"}, rows) == [
        "2 description holds the NUL character, which PostgreSQL text cannot store"]
    assert problems_of("mysql", {"description": "longtext"}, rows) == []


def test_a_row_larger_than_max_allowed_packet_is_refused():
    declared = {"embedding_text": "longtext", "embedding": "longblob"}
    rows = [["a" * 100, b"\x00" * 100], ["a" * 1000, b"\x00" * 600_000]]
    assert problems_of("mysql", declared, rows, max_row_bytes=1 << 20) == [
        "2 the row holds 601000 bytes of text and binary data, more than MariaDB's max_allowed_packet "
        "(1048576 bytes) lets one INSERT carry"]
    assert problems_of("mysql", declared, rows, max_row_bytes=DEFAULT_MAX_ALLOWED_PACKET) == []


def test_a_value_of_the_wrong_type_is_left_to_validation_and_never_crashes_the_check():
    rows = [["text where a number belongs"], [math.inf], [None]]
    assert [p.split()[0] for p in problems_of("mysql", {"price_cpm": "double"}, rows)] == ["2"]
    assert problems_of("mysql", {"slug": "varchar(3)"}, [[12345], ["abcd"]]) == [
        "2 slug holds 4 characters, more than the 3 of MariaDB's VARCHAR(3) column"]


def test_at_most_twenty_problems_per_column_and_batch():
    assert len(problems_of("mysql", {"price_cpm": "double"}, [[math.inf]] * 100)) == 20


def test_the_shipped_mariadb_schema_is_as_wide_as_innodb_keys_allow():
    types = shipped_types("mysql")
    assert types["tenant"]["slug"] == "VARCHAR(768)"
    assert types["product_embeddings"]["provider"] == types["product_embeddings"]["model"] == "VARCHAR(383)"
    unindexed = [(table, column) for table, columns in types.items() for column, declared in columns.items()
                 if declared.startswith(("VARCHAR", "TEXT")) and column not in ("slug", "provider", "model")]
    assert unindexed == []  # every other text column is LONGTEXT
    assert set(types) == set(dataset.table_names())
    assert column_rules("mysql", types["product"]["price_cpm"])  # DOUBLE: the finite rule


# -- validation against a target engine ------------------------------------------------------------------------
def set_value(lines: list[forge.Line], table: str, row: int, column: str, value: Any) -> list[forge.Line]:
    """Row ``row`` (1-based) of ``table`` with ``column`` set to ``value`` (as written in the file)."""
    out: list[forge.Line] = []
    current, index, seen = None, None, 0
    for line in lines:
        if isinstance(line, dict) and line.get("kind") == "table":
            current, seen = line["name"], 0
            index = [c["name"] for c in line["columns"]].index(column) if line["name"] == table else None
        elif isinstance(line, dict):
            current = None
        elif current == table and index is not None:
            seen += 1
            if seen == row:
                line = list(line)
                line[index] = value
        out.append(line)
    return out


HOSTILE = [  # (table, row, column, value as the file holds it, the MariaDB column it breaks)
    ("product", 3, "price_cpm", {"$float": "inf"}, "shipped"),
    ("product", 5, "price_cpm", {"$float": "nan"}, "shipped"),
    ("product", 7, "created_at", "10000-01-01 00:00:00", "shipped"),
    ("tenant", 2, "slug", "s" * 800, "shipped"),
    ("tenant", 3, "name", "n" * 300, "legacy"),
    ("product", 9, "description", "d" * 70_000, "legacy"),
]


@pytest.fixture
def hostile_file(seeded, backup_env) -> Path:
    """A SQLite backup, with valid checksums, holding values MariaDB cannot store."""
    seeded()
    made = services.backup_create(compression="gzip")
    lines = forge.read_lines(made.path)
    for table, row, column, value, _schema in HOSTILE:
        lines = set_value(lines, table, row, column, value)
    return forge.write(backup_env / "hostile.jsonl.gz", lines, compress=True)


def located(problems: list[Any]) -> set[tuple[str, int, str]]:
    return {(p.section, p.row, p.message.split()[0]) for p in problems}


def test_validation_without_a_target_accepts_values_sqlite_and_postgresql_store(hostile_file):
    report = services.backup_validate(file=str(hostile_file))
    assert report.valid and report.target_engine is None


def test_validation_against_mariadb_names_every_refused_value_by_table_row_and_column(hostile_file):
    report = services.backup_validate(file=str(hostile_file), target_engine="mysql")
    assert not report.valid and report.target_engine == "mysql"
    assert located(report.problems) == {(t, r, c) for t, r, c, _v, schema in HOSTILE if schema == "shipped"}
    assert services.backup_validate(file=str(hostile_file), target_engine="postgresql").valid
    assert services.backup_validate(file=str(hostile_file), target_engine="sqlite").valid


def test_validate_command_target_engine_option(hostile_file):
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("backup_validate", str(hostile_file), "--target-engine", "mysql", stdout=out)
    assert raised.value.returncode == 2
    text = out.getvalue()
    assert "product row 3: price_cpm is inf, which MariaDB cannot store" in text
    assert "tenant row 2: slug holds 800 characters, more than the 768 of MariaDB's VARCHAR(768) column" in text
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("backup_validate", str(hostile_file), "--target-engine", "oracle", stderr=io.StringIO())


@pytest.fixture
def legacy_mysql(transactional_db: None) -> Any:
    """The MariaDB database with the AdCP application's own (narrower) tables; dropped afterwards."""
    drop_schema("mysql")
    with connections["mysql"].cursor() as cursor:
        for statement in split_sql(LEGACY_MYSQL_DDL.read_text()):
            cursor.execute(statement)
    yield "mysql"
    drop_schema("mysql")


@needs_mysql
@all_databases
def test_validation_uses_the_live_column_sizes_of_a_legacy_mariadb_database(hostile_file, legacy_mysql):
    report = services.backup_validate(file=str(hostile_file), target_engine="mysql", database="mysql")
    assert located(report.problems) == {(t, r, c) for t, r, c, _v, _schema in HOSTILE}
    name = next(p for p in report.problems if p.section == "tenant" and p.row == 3)
    assert name.message == "name holds 300 characters, more than the 255 of MariaDB's VARCHAR(255) column"


# -- restores into MariaDB -----------------------------------------------------------------------------------
@needs_mysql
@all_databases
@pytest.mark.parametrize("create_schema", [False, True], ids=["existing-tables", "create-schema"])
def test_a_refused_value_stops_the_restore_with_one_sentence_and_changes_nothing(hostile_file, adcp_schema, seeded,
                                                                                 create_schema):
    seeded("mysql")
    if create_schema:
        drop_schema("mysql")
    state = table_state("mysql")
    tables = get_engine("mysql").existing_tables()
    with pytest.raises(ValuesRefused) as raised:
        services.backup_restore(file=str(hostile_file), database="mysql", safety_backup=False,
                                create_schema=create_schema, from_other_database=True)
    message = str(raised.value)
    assert message.startswith("MariaDB cannot store a value of tenant row 2: slug holds 800 characters")
    assert "\n" not in message and "rolled back" in message
    assert get_engine("mysql").existing_tables() == tables and table_state("mysql") == state

    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as command:
        call_command("backup_restore", str(hostile_file), "--database", "mysql", "--force", "--no-safety-backup",
                     "--from-other-database",
                     *(["--create-schema"] if create_schema else []), stdout=out, stderr=err)
    assert command.value.returncode == 1 and str(command.value) == message
    assert "Traceback" not in out.getvalue() + err.getvalue()
    assert table_state("mysql") == state


@needs_mysql
@all_databases
def test_an_infinity_alone_gets_its_sentence_too(seeded, backup_env):
    seeded("mysql")
    made = services.backup_create(database="mysql", compression="none")
    lines = set_value(forge.read_lines(made.path), "product", 4, "price_cpm", {"$float": "-inf"})
    path = forge.write(backup_env / "inf.jsonl", lines)
    state = table_state("mysql")
    with pytest.raises(RestoreError, match=r"^MariaDB cannot store a value of product row 4: price_cpm is -inf, "
                                           r"which MariaDB cannot store \(it has no infinities or NaN\); the restore"):
        services.backup_restore(file=str(path), database="mysql", safety_backup=False, from_other_database=True)
    assert table_state("mysql") == state


@needs_mysql
@all_databases
def test_the_dry_run_names_every_refused_value(hostile_file, seeded):
    seeded("mysql")
    state = table_state("mysql")
    with pytest.raises(ValuesRefused) as raised:
        services.backup_restore(file=str(hostile_file), database="mysql", dry_run=True, from_other_database=True)
    assert located(raised.value.problems) == {(t, r, c) for t, r, c, _v, schema in HOSTILE if schema == "shipped"}
    assert "cannot store 4 value(s) of the backup" in str(raised.value)
    assert table_state("mysql") == state


@needs_mysql
@all_databases
def test_a_backup_restores_into_a_legacy_mariadb_database_and_long_values_are_named(seeded, backup_env,
                                                                                    legacy_mysql):
    seeded("default")
    expected = table_state("default")
    made = services.backup_create(compression="none")
    restored = services.backup_restore(file=made.name, database="mysql", safety_backup=False, from_other_database=True)
    assert restored.restored == made.counts
    assert len(table_state("mysql")["product"]) == len(expected["product"])

    state = table_state("mysql")
    lines = set_value(forge.read_lines(made.path), "tenant", 3, "name", "n" * 300)
    path = forge.write(backup_env / "long-name.jsonl", lines)
    with pytest.raises(ValuesRefused, match=r"tenant row 3: name holds 300 characters, more than the 255 of "
                                            r"MariaDB's VARCHAR\(255\) column"):
        services.backup_restore(file=str(path), database="mysql", safety_backup=False, from_other_database=True)
    assert table_state("mysql") == state


WIDE = {  # values PostgreSQL stores and the narrow MariaDB schema did not
    ("tenant", "name"): "N" * 300, ("tenant", "slug"): "s" * 700, ("tenant", "custom_prompt"): "é" * 40_000,
    ("product", "name"): "P" * 1000, ("product", "description"): "d" * 200_000,
    ("product", "delivery_type"): "t" * 60, ("externalagent", "base_url"): "https://x.example/" + "u" * 600,
    ("product_embeddings", "provider"): "p" * 300, ("product_embeddings", "updated_at"): "2024-01-01 " + "z" * 50,
}


@pytest.mark.skipif(not (MYSQL and POSTGRESQL), reason="needs ADCP_TEST_POSTGRES_URL and ADCP_TEST_MYSQL_URL")
@all_databases
def test_a_backup_that_restores_into_postgresql_restores_into_mariadb(seeded, adcp_schema, backup_env):
    seeded("default")
    made = services.backup_create(compression="none")
    lines = forge.read_lines(made.path)
    for (table, column), value in WIDE.items():
        lines = set_value(lines, table, 1, column, value)
    path = forge.write(backup_env / "wide.jsonl", lines)
    assert services.backup_validate(file=str(path), target_engine="mysql").valid
    states = {}
    for alias in ("postgresql", "mysql"):
        adcp_schema(alias)
        drop_schema(alias)
        services.backup_restore(file=str(path), database=alias, create_schema=True, from_other_database=True)
        rows = {spec.name: dict(zip(spec.column_names, table_state(alias)[spec.name][0])) for spec in dataset.tables()}
        states[alias] = {key: rows[key[0]][key[1]] for key in WIDE}
    assert states["postgresql"] == states["mysql"] == WIDE
