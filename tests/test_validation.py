"""validation.py on its own: the header's schema and DDL, and the checked event stream a restore reads."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adcp_backup import validation
from adcp_backup.db.base import shipped_ddl
from adcp_backup.exceptions import InvalidBackup, Problem
from adcp_backup.format.events import FileRecord, RowBatch, TableEnd, TableStart

from .helpers import Seeded
from .scheduling_fixtures import TENANT_COLUMNS
from .streams import StreamReader, database_stream, table_events

TENANT_NAMES = [str(c["name"]) for c in TENANT_COLUMNS]
TENANT_FAMILIES = [str(c["family"]) for c in TENANT_COLUMNS]
ACME = [1, "Acme", "acme", None, None, False, "2024-01-01 00:00:00"]


def header(**schema: Any) -> dict[str, Any]:
    return {"counts": {"tenant": 1}, "schema": {"engine": "sqlite", "tables": {"tenant": TENANT_COLUMNS}, **schema}}


def tenant_stream(head: dict[str, Any], rows: list[list[Any]] | None = None) -> StreamReader:
    return StreamReader(head, table_events("tenant", TENANT_NAMES, TENANT_FAMILIES, rows or [ACME]))


# -- header_problems -------------------------------------------------------------------------------------
def test_a_header_of_registry_tables_and_the_shipped_ddl_has_no_problem() -> None:
    assert validation.header_problems(header(ddl=shipped_ddl("sqlite"))) == []
    assert validation.header_problems({}) == []  # legacy files carry no schema


def test_header_problems_name_each_unknown_table_and_column_and_family() -> None:
    columns = [dict(c) for c in TENANT_COLUMNS]
    columns[1] = {**columns[1], "name": "Name"}  # the registry spells it in lower case
    columns[5] = {**columns[5], "family": "text"}
    head = {"schema": {"engine": "sqlite", "tables": {"tenant": columns, "tenants": TENANT_COLUMNS,
                                                      "product": "not a list"}}}
    assert validation.header_problems(head) == [
        Problem("header", "tenant: unknown column 'Name': tenant has no such column"),
        Problem("header", "tenant: the column enable_web_context is 'text' in the file, but boolean in tenant"),
        Problem("header", "the schema names an unknown table 'tenants'"),
        Problem("header", "the schema's columns of product are malformed"),
    ]


def test_ddl_that_is_not_the_shipped_schema_is_a_problem_whatever_its_spelling() -> None:
    shipped = shipped_ddl("sqlite")
    respelled = [f"-- as captured\n{' '.join(s.split())} ;" for s in shipped]  # comments and layout do not matter
    assert validation.header_problems(header(ddl=respelled)) == []
    hostile = "CREATE TRIGGER t AFTER INSERT ON tenant BEGIN DELETE FROM product; END"
    assert validation.header_problems(header(ddl=[*shipped, hostile])) == [
        Problem("header", f"ddl statement {len(shipped) + 1} is not part of the AdCP sqlite schema this version "
                          f"ships: {hostile!r}")]
    assert validation.header_problems(header(engine="oracle", ddl=shipped)) == [
        Problem("header", "the schema's engine 'oracle' is none of sqlite, postgresql, mysql")]
    assert validation.header_problems(header(ddl="DROP TABLE tenant")) == [
        Problem("header", "the schema's ddl is not a list of statements")]


@pytest.mark.parametrize("schema", ["tables", ["tenant"]], ids=["string", "list"])
def test_a_schema_that_is_not_an_object_is_one_problem(schema: Any) -> None:
    assert validation.header_problems({"schema": schema}) == [Problem("header", "the schema is not an object")]


# -- checked_events ------------------------------------------------------------------------------------
def test_a_sound_stream_passes_through_unchanged() -> None:
    reader = tenant_stream(header())
    assert list(validation.checked_events(reader, settings_targets=False)) == [
        TableStart("tenant", TENANT_NAMES, TENANT_FAMILIES),
        RowBatch("tenant", [ACME], 1),
        TableEnd("tenant", 1),
    ]


@pytest.mark.django_db
def test_the_stream_of_a_seeded_database_passes_through_unchanged(seeded: Seeded) -> None:
    seeded()
    reader = database_stream(batch=25)
    assert list(validation.checked_events(reader, settings_targets=False)) == reader.stream
    assert [e.name for e in reader.stream if isinstance(e, TableEnd)] == [
        "tenant", "product", "externalagent", "product_embeddings"]


def test_a_header_problem_refuses_the_file_before_anything_it_names_is_used() -> None:
    reader = tenant_stream(header(ddl=["DROP TABLE tenant"]))
    with pytest.raises(InvalidBackup) as refused:
        validation.require_sound_header(reader.header)
    assert refused.value.problems == [Problem("header", "ddl statement 1 is not part of the AdCP sqlite schema "
                                                        "this version ships: 'DROP TABLE tenant'")]


def test_an_unknown_table_is_refused_at_its_start() -> None:
    reader = StreamReader(header(), [*table_events("tenant", TENANT_NAMES, TENANT_FAMILIES, [ACME]),
                                     TableStart("auth_user", ["id"], ["integer"])])
    seen: list[Any] = []
    with pytest.raises(InvalidBackup) as refused:
        seen.extend(validation.checked_events(reader, settings_targets=False))
    assert refused.value.problems == [
        Problem("auth_user", "unknown table 'auth_user': this is not a table adcp-backup knows")]
    assert [type(e).__name__ for e in seen] == ["TableStart", "RowBatch", "TableEnd"]


def test_a_table_without_its_primary_key_is_refused() -> None:
    columns, families = TENANT_NAMES[1:], TENANT_FAMILIES[1:]
    reader = StreamReader(header(), [TableStart("tenant", columns, families)])
    with pytest.raises(InvalidBackup) as refused:
        list(validation.checked_events(reader, settings_targets=False))
    assert refused.value.problems == [Problem("tenant", "the primary key id is missing")]


def test_a_count_other_than_the_headers_is_refused_at_the_tables_end() -> None:
    reader = tenant_stream({**header(), "counts": {"tenant": 2}})
    with pytest.raises(InvalidBackup) as refused:
        list(validation.checked_events(reader, settings_targets=False))
    assert refused.value.problems == [Problem("tenant", "the header announces 2 rows, the file holds 1")]


@pytest.mark.parametrize("sequence", [-1, 2**63, "7", 1.5], ids=["negative", "too-large", "text", "float"])
def test_a_sequence_no_engine_can_hold_is_refused(sequence: Any) -> None:
    reader = StreamReader(header(), [TableStart("tenant", TENANT_NAMES, TENANT_FAMILIES, sequence=sequence)])
    with pytest.raises(InvalidBackup) as refused:
        list(validation.checked_events(reader, settings_targets=False))
    assert refused.value.problems == [
        Problem("tenant", f"the sequence {sequence!r} is not a counter (an integer from 0 to 2^63 - 1)")]


def test_two_records_of_one_settings_file_are_refused(settings: Any, tmp_path: Path) -> None:
    target = tmp_path / "app_settings.json"
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(target)]
    record = FileRecord(str(target), b"{}", None, 0o600, 2)
    reader = StreamReader({}, [record, record])
    with pytest.raises(InvalidBackup) as refused:
        list(validation.checked_events(reader, settings_targets=False))
    assert refused.value.problems == [
        Problem(f"file {target}", f"a second record for {target} (the first was {target})")]
