"""What makes a backup's content valid (validation.py): the header's schema and DDL, the checked event stream a
restore reads (fed event streams built from real tables), and the validation pass on small files with valid
checksums and signatures (tests/forge.py), so that only the content check can refuse them. Every problem list is
compared whole: section, row and message, key values included."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adcp_backup import dataset, services, validation
from adcp_backup.db.base import shipped_ddl
from adcp_backup.exceptions import InvalidBackup, Problem, RestoreError
from adcp_backup.format.events import FileRecord, RowBatch, TableEnd, TableStart
from adcp_backup.validation import KeyIndex, RowChecker
from tests import forge

from .helpers import Seeded
from .scheduling_fixtures import TENANT_COLUMNS
from .streams import StreamReader, database_stream, table_events

TENANT_NAMES = [str(c["name"]) for c in TENANT_COLUMNS]
TENANT_FAMILIES = [str(c["family"]) for c in TENANT_COLUMNS]
ACME = [1, "Acme", "acme", None, None, False, "2024-01-01 00:00:00"]


def schema_header(**schema: Any) -> dict[str, Any]:
    return {"counts": {"tenant": 1}, "schema": {"engine": "sqlite", "tables": {"tenant": TENANT_COLUMNS}, **schema}}


def tenant_stream(head: dict[str, Any], rows: list[list[Any]] | None = None) -> StreamReader:
    return StreamReader(head, table_events("tenant", TENANT_NAMES, TENANT_FAMILIES, rows or [ACME]))


# -- header_problems -------------------------------------------------------------------------------------
def test_a_header_of_registry_tables_and_the_shipped_ddl_has_no_problem() -> None:
    assert validation.header_problems(schema_header(ddl=shipped_ddl("sqlite"))) == []
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
    assert validation.header_problems(schema_header(ddl=respelled)) == []
    hostile = "CREATE TRIGGER t AFTER INSERT ON tenant BEGIN DELETE FROM product; END"
    assert validation.header_problems(schema_header(ddl=[*shipped, hostile])) == [
        Problem("header", f"ddl statement {len(shipped) + 1} is not part of the AdCP sqlite schema this version "
                          f"ships: {hostile!r}")]
    assert validation.header_problems(schema_header(engine="oracle", ddl=shipped)) == [
        Problem("header", "the schema's engine 'oracle' is none of sqlite, postgresql, mysql")]
    assert validation.header_problems(schema_header(ddl="DROP TABLE tenant")) == [
        Problem("header", "the schema's ddl is not a list of statements")]


@pytest.mark.parametrize("schema", ["tables", ["tenant"]], ids=["string", "list"])
def test_a_schema_that_is_not_an_object_is_one_problem(schema: Any) -> None:
    assert validation.header_problems({"schema": schema}) == [Problem("header", "the schema is not an object")]


# -- checked_events ------------------------------------------------------------------------------------
def test_a_sound_stream_passes_through_unchanged() -> None:
    reader = tenant_stream(schema_header())
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
    reader = tenant_stream(schema_header(ddl=["DROP TABLE tenant"]))
    with pytest.raises(InvalidBackup) as refused:
        validation.require_sound_header(reader.header)
    assert refused.value.problems == [Problem("header", "ddl statement 1 is not part of the AdCP sqlite schema "
                                                        "this version ships: 'DROP TABLE tenant'")]


def test_an_unknown_table_is_refused_at_its_start() -> None:
    reader = StreamReader(schema_header(), [*table_events("tenant", TENANT_NAMES, TENANT_FAMILIES, [ACME]),
                                     TableStart("auth_user", ["id"], ["integer"])])
    seen: list[Any] = []
    with pytest.raises(InvalidBackup) as refused:
        seen.extend(validation.checked_events(reader, settings_targets=False))
    assert refused.value.problems == [
        Problem("auth_user", "unknown table 'auth_user': this is not a table adcp-backup knows")]
    assert [type(e).__name__ for e in seen] == ["TableStart", "RowBatch", "TableEnd"]


def test_a_table_without_its_primary_key_is_refused() -> None:
    columns, families = TENANT_NAMES[1:], TENANT_FAMILIES[1:]
    reader = StreamReader(schema_header(), [TableStart("tenant", columns, families)])
    with pytest.raises(InvalidBackup) as refused:
        list(validation.checked_events(reader, settings_targets=False))
    assert refused.value.problems == [Problem("tenant", "the primary key id is missing")]


def test_a_count_other_than_the_headers_is_refused_at_the_tables_end() -> None:
    reader = tenant_stream({**schema_header(), "counts": {"tenant": 2}})
    with pytest.raises(InvalidBackup) as refused:
        list(validation.checked_events(reader, settings_targets=False))
    assert refused.value.problems == [Problem("tenant", "the header announces 2 rows, the file holds 1")]


@pytest.mark.parametrize("sequence", [-1, 2**63, "7", 1.5], ids=["negative", "too-large", "text", "float"])
def test_a_sequence_no_engine_can_hold_is_refused(sequence: Any) -> None:
    reader = StreamReader(schema_header(), [TableStart("tenant", TENANT_NAMES, TENANT_FAMILIES, sequence=sequence)])
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


def test_a_settings_file_that_cannot_be_written_is_refused_only_by_a_restore_that_writes_it(
        settings: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "settings"
    blocker.write_bytes(b"")  # a regular file where the target's folder should be: no write passes, even as root
    target = blocker / "app_settings.json"
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(target)]
    record = FileRecord(str(target), b"{}", None, 0o600, 2)
    assert list(validation.checked_events(StreamReader({}, [record]), settings_targets=False)) == [record]
    with pytest.raises(RestoreError) as refused:
        list(validation.checked_events(StreamReader({}, [record]), settings_targets=True))
    assert str(refused.value) == (f"The settings files cannot be written, so nothing was restored: "
                                  f"{target}: {blocker} is not a folder.")


WHEN = "2024-01-01 00:00:00"


def columns(table: str) -> list[dict[str, Any]]:
    return [{"name": c.name, "family": c.family, "nullable": c.nullable} for c in dataset.table(table).columns]


def header(**extra: Any) -> dict[str, Any]:
    return {"kind": "header", "format": "adcp-backup", "version": 3,
            "created_at": datetime(2025, 3, 1, tzinfo=UTC).isoformat(),
            "source": {"engine": "sqlite", "alias": "default"}, "scope": {"tenants": "all"}, "purpose": "manual",
            "compression": "none", "secrets": "redacted", **extra}


def table(name: str, rows: list[Any], *, cols: list[dict[str, Any]] | None = None, **extra: Any) -> list[forge.Line]:
    return [{"kind": "table", "name": name, "columns": cols if cols is not None else columns(name), **extra},
            *rows, {"kind": "table_end", "name": name}]


def tenant(pk: int, slug: str, web: Any = False, name: Any = "Acme") -> list[Any]:
    return [pk, name, slug, None, None, web, WHEN]


def product(pk: int, tenant_id: int) -> list[Any]:
    return [pk, tenant_id, f"P{pk}", None, 1.5, "guaranteed", None, None, WHEN]


def embedding(pk: int, product_id: int, provider: str | None = "gemini", *, size: int = 8,
              dim: int | None = 2) -> list[Any]:
    return [pk, product_id, "text", "hash", {"$bytes": "AAAAAAAAAAA="} if size == 8 else {"$bytes": "AAAA"},
            provider, "m1", dim, None, None, WHEN]


@pytest.fixture
def problems_of(backup_env: Path) -> Callable[..., list[tuple[str, int | None, str]]]:
    """Write the lines as a sealed, signed backup and validate it: its problems as (section, row, message)."""

    def validate(*lines: forge.Line, name: str = "forged.jsonl") -> list[tuple[str, int | None, str]]:
        forge.write(backup_env / "backups" / name, list(lines))
        report = services.backup_validate(file=name)
        assert report.valid == (not report.problems)
        return [(p.section, p.row, p.message) for p in report.problems]

    (backup_env / "backups").mkdir(exist_ok=True)
    return validate


def test_a_well_formed_file_has_no_problems(problems_of: Any) -> None:
    assert problems_of(header(counts={"tenant": 2, "product": 1}),
                       *table("tenant", [tenant(1, "acme", True), tenant(2, "beta", 0)], sequence=2),
                       *table("product", [product(1, 2)])) == []


# -- values of each row ---------------------------------------------------------------------------------------
def test_a_boolean_column_takes_true_false_0_and_1_and_nothing_else(problems_of: Any) -> None:
    rows = [tenant(1, "a", True), tenant(2, "b", 0), tenant(3, "c", 1), tenant(4, "d", 2), tenant(5, "e", -1),
            tenant(6, "f", "yes"), tenant(7, "g", None)]
    assert problems_of(header(), *table("tenant", rows)) == [
        ("tenant", 6, "enable_web_context should be a boolean, not str"),
        ("tenant", 7, "enable_web_context is NULL but the column is NOT NULL"),
        ("tenant", 4, "enable_web_context should be 0 or 1, not 2"),
        ("tenant", 5, "enable_web_context should be 0 or 1, not -1"),
    ]


def test_each_family_names_what_it_expected_and_what_it_found(problems_of: Any) -> None:
    assert problems_of(header(), *table("tenant", [["1", 5, "acme", None, None, False, 20240101]]),
                       *table("product", [[1, 1, "P", None, "cheap", "guaranteed", None, None, WHEN]])) == [
        ("tenant", 1, "id should be an integer, not str"),
        ("tenant", 1, "name should be text, not int"),
        ("tenant", 1, "created_at should be a date and time, not int"),
        ("product", 1, "price_cpm should be a number, not str"),
        ("product", 1, "tenant_id 1 has no row in tenant"),  # the tenant's id is the text "1"
    ]


def test_a_float_column_takes_integers_and_a_nullable_column_takes_null(problems_of: Any) -> None:
    row = [1, 1, "P", None, 3, "guaranteed", None, None, WHEN]
    assert problems_of(header(), *table("tenant", [tenant(1, "a")]), *table("product", [row])) == []


def test_an_embedding_holds_four_bytes_per_dimension(problems_of: Any) -> None:
    rows = [embedding(1, 1), embedding(2, 1, "openai", size=3), embedding(3, 1, "other", dim=None)]
    assert problems_of(header(), *table("tenant", [tenant(1, "a")]), *table("product", [product(1, 1)]),
                       *table("product_embeddings", rows)) == [
        ("product_embeddings", 2, "embedding holds 3 bytes, but dim 2 needs 8"),
    ]
    assert problems_of(header(), *table("product_embeddings", [["x", 1, "t", "h", "AAAA", None, None, 1, None,
                                                                None, None]])) == [
        ("product_embeddings", 1, "id should be an integer, not str"),
        ("product_embeddings", 1, "embedding holds 3 bytes, but dim 1 needs 4"),
    ]


def test_bad_values_are_reported_for_each_row_up_to_twenty_per_column_and_batch(
        problems_of: Any, settings: Any,
) -> None:
    settings.ADCP_BACKUP_MAX_PROBLEMS = 1000
    rows = [tenant(n, f"t{n}", name=None) for n in range(1, 31)]
    found = problems_of(header(), *table("tenant", rows))
    assert found == [("tenant", n, "name is NULL but the column is NOT NULL") for n in range(1, 21)]


def test_a_short_or_damaged_row_is_reported_not_a_crash(problems_of: Any) -> None:
    assert problems_of(header(), *table("tenant", [tenant(1, "a"), [2, "B"]])) == [
        ("tenant", 2, "the row has 2 values, expected 7")]
    assert problems_of(header(), *table("tenant", [tenant(1, "a"), b'[2, "B", "b", null, null, true'])) == [
        ("tenant", 2, "the row is not valid JSON")]


def test_a_value_that_cannot_be_decoded_is_reported_with_its_row(problems_of: Any) -> None:
    rows = [tenant(1, "a"), tenant(2, "b"), [3, "C", "c", {"$bytes": "!!"}, None, True, WHEN]]
    assert problems_of(header(), *table("tenant", rows)) == [
        ("tenant", 3, "a value cannot be decoded: Only base64 data is allowed")]


# -- unique and foreign keys ------------------------------------------------------------------------------------
def test_duplicate_keys_name_the_key_its_values_and_both_rows(problems_of: Any) -> None:
    rows = [tenant(1, "acme"), tenant(2, "beta"), tenant(1, "gamma"), tenant(4, "acme"), tenant(5, "acme")]
    assert problems_of(header(), *table("tenant", rows)) == [
        ("tenant", 3, "duplicate key (id=1), first at row 1"),
        ("tenant", 5, "duplicate key (slug='acme'), first at row 1"),
    ]


def test_a_foreign_key_names_the_missing_value_and_its_table(problems_of: Any) -> None:
    assert problems_of(header(), *table("tenant", [tenant(1, "a")]),
                       *table("product", [product(1, 1), product(2, 7), product(3, 1), product(4, 9)])) == [
        ("product", 2, "tenant_id 7 has no row in tenant"),
        ("product", 4, "tenant_id 9 has no row in tenant"),
    ]


def test_keys_are_checked_in_every_table_the_file_holds_after_one_it_lacks(problems_of: Any) -> None:
    # No tenant table: the products' tenants cannot be checked, but their own keys and the embeddings' can.
    assert problems_of(header(), *table("product", [product(1, 5), product(1, 6), product(3, 7)]),
                       *table("product_embeddings", [embedding(1, 1), embedding(2, 1), embedding(3, 2, None),
                                                     embedding(4, 2, None), embedding(5, 8)])) == [
        ("product", 2, "duplicate key (id=1), first at row 1"),
        ("product_embeddings", 2, "duplicate key (product_id=1, provider='gemini', model='m1'), first at row 1"),
        ("product_embeddings", 3, "product_id 2 has no row in product"),
        ("product_embeddings", 4, "product_id 2 has no row in product"),
        ("product_embeddings", 5, "product_id 8 has no row in product"),
    ]
    # Without products, the embeddings' own unique key is still checked.
    assert problems_of(header(), *table("externalagent", []),
                       *table("product_embeddings", [embedding(1, 1), embedding(2, 1)])) == [
        ("product_embeddings", 2, "duplicate key (product_id=1, provider='gemini', model='m1'), first at row 1"),
    ]


def test_keys_are_not_checked_in_a_file_whose_trailer_is_damaged(problems_of: Any, backup_env: Any) -> None:
    path = forge.write(backup_env / "backups" / "cut.jsonl", [header(), *table("tenant", [tenant(1, "a"),
                                                                                         tenant(1, "a")])])
    path.write_bytes(path.read_bytes().rsplit(b"\n", 2)[0] + b"\n")  # the trailer gone
    report = services.backup_validate(file="cut.jsonl")
    assert [p.section for p in report.problems] == ["trailer"]


def test_a_key_index_reports_nothing_for_tables_it_never_started() -> None:
    with KeyIndex() as keys:
        keys.add("tenant", [tenant(1, "a"), tenant(1, "a")], 1)
        assert keys.problems() == []


def test_a_key_index_keeps_at_most_limit_problems_per_check() -> None:
    with KeyIndex() as keys:
        keys.start_table(dataset.table("tenant"), [c["name"] for c in columns("tenant")])
        keys.add("tenant", [tenant(1, f"s{n}") for n in range(5)], 10)
        assert keys.problems(limit=2) == [Problem("tenant", "duplicate key (id=1), first at row 10", 14)]
        keys.start_table(dataset.table("product"), [c["name"] for c in columns("product")])
        keys.add("product", [product(n, 99) for n in range(1, 5)], 1)
        assert keys.problems(limit=2) == [Problem("tenant", "duplicate key (id=1), first at row 10", 14),
                                          Problem("product", "tenant_id 99 has no row in tenant", 1),
                                          Problem("product", "tenant_id 99 has no row in tenant", 2)]


def test_a_key_index_checks_only_the_key_columns_a_file_carries() -> None:
    with KeyIndex() as keys:
        keys.start_table(dataset.table("tenant"), ["id", "name"])  # no slug column
        keys.add("tenant", [[1, "a"], [2, "a"]], 1)
        keys.start_table(dataset.table("product"), ["id", "name"])  # no tenant_id column
        keys.add("product", [[1, "a"], [1, "b"]], 1)
        assert keys.problems() == [Problem("product", "duplicate key (id=1), first at row 1", 2)]


# -- the registry, not the file, says what a column holds ------------------------------------------------------
def test_a_row_checker_takes_families_and_nullability_from_the_registry_not_the_file() -> None:
    names = [c["name"] for c in columns("tenant")]
    lying = ["text"] * len(names)  # the file calls every column text
    checker = RowChecker(dataset.table("tenant"), names, lying)
    rows: list[list[Any]] = [[1, None, "a", None, None, "yes", WHEN], [2, "B", "b", None, None, 3, WHEN]]
    assert checker.check(rows, 1) == [
        Problem("tenant", "name is NULL but the column is NOT NULL", 1),
        Problem("tenant", "enable_web_context should be a boolean, not str", 1),
        Problem("tenant", "enable_web_context should be 0 or 1, not 3", 2),
    ]


def test_a_row_checker_without_not_null_leaves_nulls_to_the_database() -> None:
    names = [c["name"] for c in columns("tenant")]
    checker = RowChecker(dataset.table("tenant"), names, [c["family"] for c in columns("tenant")], not_null=False)
    assert checker.check([[1, None, None, None, None, None, None]], 1) == []
    assert checker.check([[1, None, "a", None, None, 7, None]], 4) == [
        Problem("tenant", "enable_web_context should be 0 or 1, not 7", 4)]


def test_a_row_checker_of_no_registry_table_uses_the_files_families() -> None:
    checker = RowChecker(None, ["a", "b"], ["integer", "boolean"])
    assert checker.table == "?"
    assert checker.check([[1, True], [None, 5], ["x", False]], 1) == [
        Problem("?", "a should be an integer, not str", 3),
        Problem("?", "b should be 0 or 1, not 5", 2),
    ]


def test_a_row_checker_treats_an_unknown_column_of_a_registry_table_as_the_file_says() -> None:
    checker = RowChecker(dataset.table("tenant"), ["id", "extra"], ["integer", "integer"])
    assert checker.check([[1, "x"], [2, None]], 1) == [Problem("tenant", "extra should be an integer, not str", 1)]


# -- structure: tables, columns, the header's schema and DDL ----------------------------------------------------
def test_unknown_tables_and_columns_are_named_safely(problems_of: Any) -> None:
    long_name = "x" * 100
    cols = columns("tenant")
    assert problems_of(header(),
                       *table("tenants'; DROP", [], cols=cols),
                       *table(long_name, [], cols=cols),
                       *table("tenant", [], cols=[*cols, {"name": "bogus\n", "family": "text"}]),
                       *table("product", [], cols=[{**c, "family": "text"} if c["name"] == "price_cpm" else c
                                                   for c in columns("product")]),
                       *table("externalagent", [], cols=[*columns("externalagent")[:2], columns("externalagent")[1]])
                       ) == [
        ('"tenants\'; DROP"', None, "unknown table \"tenants'; DROP\": this is not a table adcp-backup knows"),
        ("x" * 76 + "...", None, "unknown table '" + "x" * 76 + "...: this is not a table adcp-backup knows"),
        ("tenant", None, "unknown column 'bogus\\n': tenant has no such column"),
        ("product", None, "the column price_cpm is 'text' in the file, but float in product"),
        ("externalagent", None, "the column name appears twice"),
    ]


def test_a_table_without_its_primary_key_or_with_columns_and_families_that_differ(problems_of: Any) -> None:
    assert problems_of(header(), *table("tenant", [], cols=columns("tenant")[1:])) == [
        ("tenant", None, "the primary key id is missing")]


def test_column_problems_compare_names_families_and_their_number() -> None:
    spec = dataset.table("tenant")
    assert validation.column_problems("s", spec, ["id", "name"], ["integer"]) == [
        Problem("s", "the table's columns and families differ in number")]
    assert validation.column_problems("s", spec, ["id", 5, "Name"], ["integer", "text", "text"]) == [
        Problem("s", "unknown column 5: tenant has no such column"),
        Problem("s", "unknown column 'Name': tenant has no such column"),
    ]
    assert validation.column_problems("s", spec, ["name"], ["boolean"]) == [
        Problem("s", "the column name is 'boolean' in the file, but text in tenant")]  # no "primary key" on top
    assert validation.column_problems("s", spec, ["id"], ["integer"]) == []


@pytest.mark.parametrize(("sequence", "problems"), [
    (None, []), (0, []), (2**63 - 1, []),
    (-1, ["the sequence -1 is not a counter (an integer from 0 to 2^63 - 1)"]),
    (2**63, ["the sequence 9223372036854775808 is not a counter (an integer from 0 to 2^63 - 1)"]),
    (True, ["the sequence True is not a counter (an integer from 0 to 2^63 - 1)"]),
    ("5", ["the sequence '5' is not a counter (an integer from 0 to 2^63 - 1)"]),
])
def test_a_sequence_is_absent_or_a_counter_an_engine_can_hold(sequence: Any, problems: Any) -> None:
    assert validation.sequence_problems("tenant", sequence) == [Problem("tenant", m) for m in problems]
    start = TableStart("tenant", [c["name"] for c in columns("tenant")], [c["family"] for c in columns("tenant")],
                       sequence=sequence)
    assert validation.table_problems(start) == [Problem("tenant", m) for m in problems]


def test_a_tables_end_is_checked_against_the_headers_counts(problems_of: Any) -> None:
    assert validation.end_problems({"counts": {"tenant": 2}}, TableEnd("tenant", 3, sequence=-2)) == [
        Problem("tenant", "the sequence -2 is not a counter (an integer from 0 to 2^63 - 1)"),
        Problem("tenant", "the header announces 2 rows, the file holds 3"),
    ]
    assert validation.end_problems({"counts": {"tenant": "2"}}, TableEnd("tenant", 2)) == [
        Problem("tenant", "the header announces '2' rows, the file holds 2")]
    assert validation.end_problems({"counts": {"tenant": 3}}, TableEnd("tenant", 3)) == []
    assert validation.end_problems({"counts": {"other": 3}}, TableEnd("tenant", 3)) == []
    assert validation.end_problems({"counts": ["tenant"]}, TableEnd("tenant", 3)) == []
    assert validation.end_problems({}, TableEnd("tenant", 3)) == []
    assert problems_of(header(counts={"tenant": 1}), *table("tenant", [tenant(1, "a"), tenant(2, "b")])) == [
        ("tenant", None, "the header announces 1 rows, the file holds 2")]


def schema(tables: Any = None, **extra: Any) -> dict[str, Any]:
    return {"schema": {"tables": tables if tables is not None else {}, **extra}}


@pytest.mark.parametrize(("head", "problems"), [
    ({}, []),
    ({"schema": None}, []),
    ({"schema": []}, ["the schema is not an object"]),
    ({"schema": "tables"}, ["the schema is not an object"]),
    (schema([]), []),  # an empty list of tables is no table
    (schema(["tenant"]), ["the schema's tables are not an object"]),
    (schema({"tenant": columns("tenant")}), []),
    (schema({"Tenant": []}), ["the schema names an unknown table 'Tenant'"]),
    (schema({"tenant": "id"}), ["the schema's columns of tenant are malformed"]),
    (schema({"tenant": ["id"]}), ["the schema's columns of tenant are malformed"]),
    (schema({"tenant": [{"name": "id", "family": "integer"}, {"name": "slug", "family": "blob"}], "product": []}),
     ["tenant: the column slug is 'blob' in the file, but text in tenant", "product: the primary key id is missing"]),
    (schema({"tenant": [{"family": "integer"}]}), ["tenant: unknown column None: tenant has no such column"]),
])
def test_the_headers_schema_names_only_registry_tables_and_columns(head: Any, problems: Any) -> None:
    assert validation.header_problems(head) == [Problem("header", m) for m in problems]


def sqlite_ddl() -> list[str]:
    from adcp_backup.db.base import split_sql

    return split_sql((Path(validation.__file__).parent / "schema" / "sqlite.sql").read_text())


@pytest.mark.parametrize(("engine", "ddl", "problems"), [
    ("sqlite", None, []),
    ("sqlite", [], []),
    ("oracle", [], []),
    ("sqlite", "CREATE TABLE x (a int)", ["the schema's ddl is not a list of statements"]),
    ("sqlite", ["CREATE TABLE x (a int)", 5], ["the schema's ddl is not a list of statements"]),
    ("oracle", ["CREATE TABLE x (a int)"], ["the schema's engine 'oracle' is none of sqlite, postgresql, mysql"]),
    (None, ["x"], ["the schema's engine None is none of sqlite, postgresql, mysql"]),
    ("sqlite", ["CREATE TABLE x (a int)", "DROP TABLE tenant;\n\n  -- gone"],
     ["ddl statement 1 is not part of the AdCP sqlite schema this version ships: 'CREATE TABLE x (a int)'",
      "ddl statement 2 is not part of the AdCP sqlite schema this version ships: 'DROP TABLE tenant; -- gone'"]),
    ("postgresql", ["SELECT " + "1, " * 40 + "1"],
     ["ddl statement 1 is not part of the AdCP postgresql schema this version ships: '"
      + ("SELECT " + "1, " * 40 + "1")[:97] + "...'"]),
])
def test_ddl_in_the_header_is_only_the_shipped_schemas(engine: Any, ddl: Any, problems: Any) -> None:
    assert validation.ddl_problems(engine, ddl) == [Problem("header", m) for m in problems]


def test_the_shipped_ddl_as_written_or_respelled_by_an_engine_is_accepted() -> None:
    shipped = sqlite_ddl()
    assert shipped and validation.ddl_problems("sqlite", shipped) == []
    respelled = [s.upper().replace("(", " ( ") + " ; ; " for s in shipped if "'" not in s]
    assert respelled and validation.ddl_problems("sqlite", respelled) == []
    assert validation.header_problems({"schema": {"engine": "sqlite", "ddl": ["DROP TABLE tenant"]}}) == [
        Problem("header", "ddl statement 1 is not part of the AdCP sqlite schema this version ships: "
                          "'DROP TABLE tenant'")]


@pytest.mark.parametrize(("statement", "normal"), [
    ('CREATE TABLE "Tenant" (\n  id INTEGER -- the key\n);', "create table tenant ( id integer )"),
    ("CREATE TABLE `t` (a int(11) DEFAULT NULL, b VARCHAR(5) DEFAULT 'It''s');",
     "create table t ( a int , b varchar ( 5 ) default 'It''s' )"),
    ("CREATE INDEX i ON public.tenant (slug)", "create index i on tenant ( slug )"),
    ('SELECT "a""b", \'X\'', 'select a""b , \'X\''),
    ('SELECT "', 'select "'),
])
def test_ddl_is_compared_in_one_spelling(statement: Any, normal: Any) -> None:
    assert validation.normalise_ddl(statement) == normal


def test_a_header_naming_anything_but_the_registry_is_refused_before_a_restore_reads_on() -> None:
    with pytest.raises(InvalidBackup) as caught:
        validation.require_sound_header({"schema": {"tables": {"Tenant": []}}})
    assert caught.value.problems == [Problem("header", "the schema names an unknown table 'Tenant'")]
    validation.require_sound_header({"schema": {"tables": {"tenant": columns("tenant")}}})


def test_checked_events_stop_at_the_first_problem(backup_env: Any) -> None:
    from adcp_backup.reading import open_backup

    folder = backup_env / "backups"
    folder.mkdir(exist_ok=True)
    path = forge.write(folder / "bad.jsonl", [header(counts={"tenant": 5}), *table("tenant", [tenant(1, "a")])])
    with path.open("rb") as raw, pytest.raises(InvalidBackup) as caught, open_backup(raw) as reader:
        list(validation.checked_events(reader, settings_targets=False))
    assert caught.value.problems == [Problem("tenant", "the header announces 5 rows, the file holds 1")]
    path = forge.write(folder / "good.jsonl", [header(), *table("tenant", [tenant(1, "a")])])
    with path.open("rb") as raw, open_backup(raw) as reader:
        kinds = [type(event).__name__ for event in validation.checked_events(reader, settings_targets=False)]
    assert kinds[:3] == ["TableStart", "RowBatch", "TableEnd"]


# -- the edges of each rule ---------------------------------------------------------------------------------------
def test_a_name_from_a_file_is_shown_whole_up_to_80_characters_of_its_repr() -> None:
    spec = dataset.table("tenant")
    fits, cut = "c" * 78, "c" * 79  # repr adds two quotes: 80 and 81 characters
    assert validation.column_problems("s", spec, ["id", fits, cut], ["integer", "text", "text"]) == [
        Problem("s", f"unknown column '{fits}': tenant has no such column"),
        Problem("s", f"unknown column '{'c' * 76}...: tenant has no such column"),
    ]


def test_an_unknown_tables_section_is_its_name_without_the_quotes() -> None:
    start = TableStart("Xeno'", ["id"], ["integer"])
    assert validation.table_problems(start) == [  # repr() quotes it with double quotes, which stay
        Problem("\"Xeno'\"", "unknown table \"Xeno'\": this is not a table adcp-backup knows")]
    assert validation.table_problems(TableStart("XenoX", ["id"], ["integer"])) == [
        Problem("XenoX", "unknown table 'XenoX': this is not a table adcp-backup knows")]


def test_every_table_of_the_headers_schema_is_checked_after_a_bad_one() -> None:
    assert validation.header_problems(schema({"Tenant": [], "product": []})) == [
        Problem("header", "the schema names an unknown table 'Tenant'"),
        Problem("header", "product: the primary key id is missing")]
    assert validation.header_problems(schema({"tenant": "id", "product": []})) == [
        Problem("header", "the schema's columns of tenant are malformed"),
        Problem("header", "product: the primary key id is missing")]


@pytest.mark.parametrize("length", [99, 100, 101])
def test_a_ddl_statement_is_shown_whole_up_to_100_characters(length: Any) -> None:
    statement = "DROP TABLE " + "t" * (length - 11)
    shown = statement if length <= 100 else statement[:97] + "..."
    assert validation.ddl_problems("sqlite", [statement]) == [
        Problem("header", f"ddl statement 1 is not part of the AdCP sqlite schema this version ships: {shown!r}")]


@pytest.mark.parametrize(("statement", "normal"), [
    ("SELECT Xab, XY", "select xab , xy"),
    ('SELECT ""', "select "),  # an empty quoted name
])
def test_ddl_names_keep_their_letters(statement: Any, normal: Any) -> None:
    assert validation.normalise_ddl(statement) == normal


def app_file(path: str = "data/app_settings.json", content: bytes = b"{}\n") -> dict[str, Any]:
    import hashlib
    from base64 import b64encode

    return {"kind": "file", "path": path, "size": len(content), "mode": 0o600,
            "sha256": hashlib.sha256(content).hexdigest(), "content_b64": b64encode(content).decode()}


def test_settings_file_records_are_checked_and_one_file_recorded_twice_is_refused(
        problems_of: Any, backup_env: Any,
) -> None:
    from adcp_backup.reading import open_backup

    assert problems_of(header(), *table("tenant", [tenant(1, "a")]), app_file()) == []
    twice = [header(), *table("tenant", [tenant(1, "a")]), app_file(), app_file()]
    found = problems_of(*twice)
    target = backup_env / "data" / "app_settings.json"
    assert found == [("file data/app_settings.json", None,
                      f"a second record for {target} (the first was data/app_settings.json)")]
    path = forge.write(backup_env / "backups" / "twice.jsonl", twice)
    with path.open("rb") as raw, pytest.raises(InvalidBackup) as caught, open_backup(raw) as reader:
        list(validation.checked_events(reader, settings_targets=False))
    assert [(p.section, p.row, p.message) for p in caught.value.problems] == found
    path = forge.write(backup_env / "backups" / "table.jsonl", [header(), *table("Tenant", [], cols=columns("tenant"))])
    with path.open("rb") as raw, pytest.raises(InvalidBackup) as caught, open_backup(raw) as reader:
        list(validation.checked_events(reader, settings_targets=False))
    assert caught.value.problems == [
        Problem("Tenant", "unknown table 'Tenant': this is not a table adcp-backup knows")]


def test_the_embedding_rule_needs_both_its_columns() -> None:
    spec = dataset.table("product_embeddings")
    for names in (["id", "embedding"], ["id", "dim"], ["id"]):
        checker = RowChecker(spec, names, [spec.column(n).family for n in names])
        assert checker.rules == []
        row: dict[str, Any] = {"id": 1, "embedding": b"abc", "dim": 5}
        assert checker.check([[row[n] for n in names]], 1) == []


def test_a_row_checker_accepts_null_in_a_column_of_no_known_family() -> None:
    checker = RowChecker(None, ["a"], ["strange"])
    assert checker.check([[None]], 1) == []


def test_a_row_checker_refuses_any_other_value_in_a_column_of_no_known_family_naming_the_family() -> None:
    checker = RowChecker(None, ["a"], ["strange"])
    assert checker.check([[None], [7], ["x"]], 4) == [
        Problem("?", "a should be strange, not int", 5), Problem("?", "a should be strange, not str", 6)]


def test_a_key_index_checks_unique_keys_when_the_primary_key_is_not_carried() -> None:
    with KeyIndex() as keys:
        keys.start_table(dataset.table("tenant"), ["slug"])
        keys.add("tenant", [["a"], ["a"]], 1)
        assert keys.problems() == [Problem("tenant", "duplicate key (slug='a'), first at row 1", 2)]


def test_a_key_index_reports_at_most_a_hundred_problems_per_check_by_default() -> None:
    with KeyIndex() as keys:
        keys.start_table(dataset.table("tenant"), ["id"])
        keys.add("tenant", [[n // 2] for n in range(2 * 101)], 1)
        found = keys.problems()
    assert found == [Problem("tenant", f"duplicate key (id={n}), first at row {2 * n + 1}", 2 * n + 2)
                     for n in range(100)]


# -- the validation pass: the whole report ------------------------------------------------------------------------
def row_lines(*rows: list[Any]) -> bytes:
    import orjson

    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def test_a_valid_files_report_in_full(backup_env: Any) -> None:
    import hashlib

    from adcp_backup.progress import ProgressEvent

    (backup_env / "backups").mkdir(exist_ok=True)
    tenants, products = [tenant(1, "a"), tenant(2, "b")], [product(1, 1)]
    path = forge.write(backup_env / "backups" / "good.jsonl", [
        header(counts={"tenant": 2}, withheld_files=[".env", 5]), *table("tenant", tenants),
        *table("product", products)])
    events: list[ProgressEvent] = []

    def record(event: ProgressEvent) -> None:
        events.append(event)

    report = services.backup_validate(file="good.jsonl", progress=record)
    data = report.as_dict()
    assert data.pop("duration") >= 0
    assert data == {
        "name": "good.jsonl", "path": str(path), "valid": True, "format": "adcp-backup v3", "compression": "none",
        "encrypted": False, "created_at": "2025-03-01T00:00:00+00:00", "counts": {"tenant": 2, "product": 1},
        "checksums": {"tenant": hashlib.sha256(row_lines(*tenants)).hexdigest(),
                      "product": hashlib.sha256(row_lines(*products)).hexdigest()},
        "problems": [], "problems_total": 0, "provenance": "signed", "provenance_note": "", "future_dated": False,
        "withheld_files": [".env", "5"], "target_engine": None, "trusted": True,
    }
    assert events == [  # the header announces the tenants' count only
        ProgressEvent("validate", "tenant", 0, 2), ProgressEvent("validate", "tenant", 2, 2),
        ProgressEvent("validate", "tenant", 2, 2, finished=True),
        ProgressEvent("validate", "product", 0, None), ProgressEvent("validate", "product", 1, None),
        ProgressEvent("validate", "product", 1, 1, finished=True),
    ]


def test_a_file_that_cannot_be_read_is_reported_with_no_content(backup_env: Any) -> None:
    (backup_env / "backups").mkdir(exist_ok=True)
    (backup_env / "backups" / "empty.jsonl").write_bytes(b"")
    data = services.backup_validate(file="empty.jsonl").as_dict()
    data.pop("duration")
    assert data == {
        "name": "empty.jsonl", "path": str(backup_env / "backups" / "empty.jsonl"), "valid": False, "format": None,
        "compression": None, "encrypted": False, "created_at": None, "counts": {}, "checksums": {},
        "problems": [{"section": "file", "row": None, "message": "the file is empty"}], "problems_total": 1,
        "provenance": "unsigned", "provenance_note": "the file could not be read", "future_dated": False,
        "withheld_files": [], "target_engine": None, "trusted": False,
    }


def test_a_signed_file_with_problems_is_not_taken_as_signed(backup_env: Any) -> None:
    (backup_env / "backups").mkdir(exist_ok=True)
    forge.write(backup_env / "backups" / "bad.jsonl", [header(), *table("tenant", [tenant(1, "a", web=4)])])
    report = services.backup_validate(file="bad.jsonl")
    assert (report.valid, report.provenance, report.provenance_note) == (
        False, "unsigned", "the file has problems, so its signature proves nothing")
    forge.write(backup_env / "backups" / "unsigned.jsonl", [header(), *table("tenant", [tenant(1, "a")])],
                sign=False)
    report = services.backup_validate(file="unsigned.jsonl")
    assert (report.valid, report.provenance) == (True, "unsigned")


def test_a_file_dated_in_the_future_says_so(backup_env: Any) -> None:
    (backup_env / "backups").mkdir(exist_ok=True)
    forge.write(backup_env / "backups" / "later.jsonl", [{**header(), "created_at": "2999-01-01T00:00:00+00:00"}])
    assert services.backup_validate(file="later.jsonl").future_dated is True


def test_withheld_files_are_listed_up_to_a_hundred(backup_env: Any) -> None:
    (backup_env / "backups").mkdir(exist_ok=True)
    forge.write(backup_env / "backups" / "many.jsonl", [header(withheld_files=[f"f{n}" for n in range(150)])])
    assert services.backup_validate(file="many.jsonl").withheld_files == [f"f{n}" for n in range(100)]


def test_problems_are_kept_up_to_the_limit_and_all_of_them_counted(
        problems_of: Any, backup_env: Any, settings: Any,
) -> None:
    settings.ADCP_BACKUP_MAX_PROBLEMS = 3
    problems_of(header(), *table("tenant", [tenant(n, f"s{n}", web=5) for n in range(1, 8)]))
    report = services.backup_validate(file="forged.jsonl")
    assert report.problems == [Problem("tenant", "enable_web_context should be 0 or 1, not 5", n) for n in (1, 2, 3)]
    assert report.problems_total == 7


def test_a_target_engine_adds_the_values_it_would_refuse(problems_of: Any, backup_env: Any) -> None:
    infinite = [1, 1, "P1", None, {"$float": "inf"}, "guaranteed", None, None, WHEN]
    assert problems_of(header(), *table("tenant", [tenant(1, "a")]), *table("product", [infinite])) == []
    report = services.backup_validate(file="forged.jsonl", target_engine="mysql")
    assert report.target_engine == "mysql"
    assert report.problems == [
        Problem("product", "price_cpm is inf, which MariaDB cannot store (it has no infinities or NaN)", 1)]


def test_a_validation_is_recorded_as_succeeded_or_invalid() -> None:
    from adcp_backup.results import ValidationReport

    def report(valid: bool) -> ValidationReport:
        return ValidationReport(name="x.jsonl", path=None, valid=valid, format=None, compression=None,
                                encrypted=False, created_at=None, counts={}, checksums={}, problems=[],
                                problems_total=0, duration=0.0)

    assert validation.job_outcome(report(True)) == ("succeeded", report(True).as_dict(), "x.jsonl")
    assert validation.job_outcome(report(False)) == ("invalid", report(False).as_dict(), "x.jsonl")


def test_a_legacy_file_is_reported_as_legacy_and_never_as_signed(backup_env: Any) -> None:
    from tests.legacy_fixtures import write_v2

    (backup_env / "backups").mkdir(exist_ok=True)
    write_v2(backup_env / "backups" / "old.json", {
        "backup_metadata": {"created_at": "2025-09-02T17:46:46.629000", "version": "2.0",
                            "backup_type": "comprehensive", "data_counts": {"tenants": 1}},
        "tenants": [{"id": 1, "name": "Acme", "slug": "acme", "custom_prompt": None, "web_grounding_prompt": None,
                     "enable_web_context": True, "created_at": "2024-01-01 00:00:00"}],
        "products": [], "external_agents": [], "product_embeddings": []}, compress=False)
    report = services.backup_validate(file="old.json")
    assert (report.valid, report.format, report.counts) == (True, "legacy v2.0", {
        "tenant": 1, "product": 0, "externalagent": 0, "product_embeddings": 0})
    assert (report.provenance, report.provenance_note) == (
        "unsigned", "a legacy-format file: the legacy backup code signed nothing")


def test_value_checks_stop_once_the_kept_problems_are_full(problems_of: Any, backup_env: Any, settings: Any) -> None:
    # Bounded work on a hostile file: once the report holds ADCP_BACKUP_MAX_PROBLEMS problems, later checks of
    # values are skipped, so the total counts what was checked.
    settings.ADCP_BACKUP_MAX_PROBLEMS = 1
    row = [1, 1, None, None, {"$float": "inf"}, "guaranteed", None, None, WHEN]
    problems_of(header(), *table("product", [row]))
    report = services.backup_validate(file="forged.jsonl", target_engine="mysql")
    assert (report.problems, report.problems_total) == ([Problem("product", "name is NULL but the column is NOT NULL",
                                                                 1)], 1)


def test_the_duration_is_the_time_the_validation_took(problems_of: Any) -> None:
    import time

    problems_of(header(), *table("tenant", [tenant(1, "a")]))
    started = time.monotonic()
    report = services.backup_validate(file="forged.jsonl")
    assert 0 <= report.duration <= time.monotonic() - started


def test_an_encrypted_file_is_reported_as_encrypted_even_when_it_cannot_be_opened(
        backup_env: Any, tmp_path: Any,
) -> None:
    from tests.test_crypto import age_keygen, encrypt

    (backup_env / "backups").mkdir(exist_ok=True)
    identity, public = age_keygen(tmp_path, "key")
    plain = forge.write(tmp_path / "plain.jsonl", [header(), *table("tenant", [tenant(1, "a")])])
    target = backup_env / "backups" / "secret.jsonl.age"
    encrypt(plain, target, public)
    report = services.backup_validate(file="secret.jsonl.age", identity=identity)
    assert (report.valid, report.encrypted, report.counts) == (True, True, {"tenant": 1})
    data = bytearray(target.read_bytes())
    data[data.index(b"\n---") + 8] ^= 0x01  # inside the age header's MAC: the file cannot be opened at all
    target.write_bytes(bytes(data))
    report = services.backup_validate(file="secret.jsonl.age", identity=identity)
    assert (report.valid, report.encrypted, report.format) == (False, True, None)
    assert [p.section for p in report.problems] == ["encryption"]


def test_a_settings_file_record_judged_on_its_own(backup_env: Any) -> None:
    import hashlib

    from adcp_backup.format.events import FileRecord

    content = b"{}\n"
    record = FileRecord(path="data/app_settings.json", content=content, sha256=hashlib.sha256(content).hexdigest(),
                        mode=0o600, size=len(content))
    assert validation.file_problems(record) == []
    assert validation.file_problems(FileRecord(path="data/app_settings.json", content=content, sha256="0" * 64,
                                               mode=0o600, size=3)) == [
        Problem("file data/app_settings.json", "checksum mismatch: the file's content was changed or damaged")]
