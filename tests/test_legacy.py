"""Legacy backup files (v2.0, v1.0 full_backup, v1.0 csv_backup) validated and restored exactly, on real SQLite."""
from __future__ import annotations

import gzip
import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from adcp_backup import services
from adcp_backup.exceptions import InvalidBackup, RestoreError
from adcp_backup.format import legacy
from adcp_backup.settings_files import REDACTED

from .helpers import create_schema, fts_match, table_state
from .legacy_fixtures import (
    CSV_TIME,
    DB_URL,
    LEGACY_ENV,
    csv_document,
    seed_legacy_source,
    v1_full_document,
    v2_document,
    write_csv_backup,
    write_v1_full,
    write_v2,
)

APP_FILE = {"embeddings_provider": "gemini", "rag_top_k": 8, "greeting": "Bonjour, 世界 👋"}
TENANT_FILE = {"tenant_prompts": {"publisher-1": "Sell premium.\nEn français."}, "tenant_configurations": {}}
SECRETS = (LEGACY_ENV["GEMINI_API_KEY"], "AIza-v1-plain-secret", "s3cr3t-pass", DB_URL.split(":")[2].split("@")[0])


@pytest.fixture
def legacy_source(seeded: Any) -> dict[str, list[tuple[Any, ...]]]:
    return seed_legacy_source(seeded)


def fresh_database() -> None:
    create_schema("default")


def with_is_stale_null_as_zero(state: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """Both legacy formats wrote is_stale as false or 0 where the database held NULL: restored as 0."""
    rows = []
    for row in state["product_embeddings"]:
        row = list(row)
        if row[9] == (None, "null"):
            row[9] = (0, "integer")
        rows.append(tuple(row))
    return {**state, "product_embeddings": rows}


def assert_fts_rebuilt() -> None:
    assert fts_match("premium") or fts_match("homepage")
    with connections["default"].cursor() as cursor:
        cursor.execute("INSERT INTO products_fts(products_fts) VALUES('integrity-check')")
        cursor.execute("PRAGMA foreign_key_check")
        assert cursor.fetchall() == []


# -- v2.0 ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [True, False])
def test_v2_restores_every_value_exactly(legacy_source, backup_env, compress):
    document = v2_document(file_settings=APP_FILE, tenant_settings=TENANT_FILE, nesting=3)
    assert document["app_settings"]["file_settings"]["file_settings"]["file_settings"] == APP_FILE
    path = write_v2(backup_env / f"comprehensive_backup_20250902_174646.json{'.gz' if compress else ''}",
                    document, compress=compress)
    fresh_database()

    result = services.backup_restore(file=str(path), allow_unsigned=True)

    assert result.format == "legacy v2.0"
    assert result.restored == {"tenant": 4, "product": 60, "externalagent": 2, "product_embeddings": 12}
    assert result.defaulted == {}
    assert table_state() == with_is_stale_null_as_zero(legacy_source)
    assert_fts_rebuilt()
    app = backup_env / "data" / "app_settings.json"
    assert json.loads(app.read_text(encoding="utf-8")) == APP_FILE
    assert app.read_text(encoding="utf-8") == json.dumps(APP_FILE, indent=2, ensure_ascii=False) + "\n"
    tenant = json.loads((backup_env / "data" / "tenant_settings.json").read_text(encoding="utf-8"))
    assert tenant == TENANT_FILE and "export_timestamp" not in tenant
    variables = result.environment["variables"]
    assert variables["GEMINI_API_KEY"] == REDACTED
    assert variables["EMBEDDINGS_PROVIDER"] == "gemini"
    assert "s3cr3t-pass" not in variables["SERVICE_BASE_URL"] and "ops" in variables["SERVICE_BASE_URL"]
    assert "db-password-123" not in variables["DB_URL"]
    assert result.environment["applied"] is False
    assert result.environment["feature_flags"]["web_context_enabled"] is True
    assert not any(secret in repr(result.as_dict()) for secret in SECRETS)


def test_v2_file_settings_nested_twice_restores_the_innermost_file(legacy_source, backup_env):
    document = v2_document(file_settings=APP_FILE, nesting=2)
    wrapped = document["app_settings"]["file_settings"]
    assert set(wrapped) == {"environment_variables", "file_settings", "export_timestamp"}
    path = write_v2(backup_env / "comprehensive_backup_20250902_174646.json.gz", document)
    fresh_database()
    services.backup_restore(file=str(path), allow_unsigned=True)
    restored = json.loads((backup_env / "data" / "app_settings.json").read_text(encoding="utf-8"))
    assert restored == APP_FILE
    assert "file_settings" not in json.dumps(restored)


def test_settings_that_merely_contain_a_file_settings_key_are_not_unwrapped():
    own = {"file_settings": {"a": 1}, "theme": "dark"}
    assert legacy.unwrap_app_settings({"environment_variables": {}, "file_settings": own}) == own


def test_v2_with_no_embeddings_empties_the_table(legacy_source, backup_env):
    document = v2_document()
    document["product_embeddings"] = []
    document["backup_metadata"]["data_counts"]["embeddings"] = 0
    path = write_v2(backup_env / "comprehensive_backup_20250902_000000.json", document, compress=False)
    # into the seeded database, replacing it
    services.backup_restore(file=str(path), allow_unsigned=True, safety_backup=False)
    state = table_state()
    assert state["product_embeddings"] == []
    assert state["product"] == legacy_source["product"]


def test_v2_validates_with_format_and_counts(legacy_source, backup_env):
    path = write_v2(backup_env / "comprehensive_backup_20250902_174646.json.gz", v2_document())
    report = services.backup_validate(file=str(path))
    assert report.valid, report.problems
    assert report.format == "legacy v2.0" and report.compression == "gzip"
    assert report.counts == {"tenant": 4, "product": 60, "externalagent": 2, "product_embeddings": 12}
    assert report.created_at == "2025-09-02T17:46:46.629000"


# -- v1.0 full_backup ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [True, False])
def test_v1_full_backup_restores_every_value_exactly(legacy_source, backup_env, compress):
    document = v1_full_document()
    assert document["tenants"][0]["created_at"] == "2025-08-30T07:00:00"  # what isoformat() wrote
    assert "products" in document["tenants"][0] and "products" not in document
    path = write_v1_full(backup_env / f"full_backup_20250831_091502.json{'.gz' if compress else ''}", document,
                         compress=compress)
    fresh_database()

    result = services.backup_restore(file=str(path), allow_unsigned=True)

    assert result.format == "legacy v1.0 full_backup"
    assert result.restored == {"tenant": 4, "product": 60, "externalagent": 2, "product_embeddings": 12}
    assert table_state() == with_is_stale_null_as_zero(legacy_source)
    assert_fts_rebuilt()
    tenant = json.loads((backup_env / "data" / "tenant_settings.json").read_text(encoding="utf-8"))
    assert tenant == {"tenant_prompts": {"publisher-1": "Sell premium."}, "tenant_configurations": {}}
    variables = result.environment["variables"]
    assert variables["GEMINI_API_KEY"] == REDACTED
    assert variables["EMBEDDINGS_MODEL"] == "text-embedding-004"
    assert "EMB_BATCH_SIZE" not in variables  # null in the file: not set
    assert not any(secret in repr(result.as_dict()) for secret in SECRETS)


def test_v1_full_backup_product_nested_under_the_wrong_tenant_is_named(legacy_source, backup_env):
    document = v1_full_document()
    document["tenants"][0]["products"][1]["tenant_id"] = 2
    path = write_v1_full(backup_env / "full_backup_20250831_091502.json.gz", document)
    report = services.backup_validate(file=str(path))
    assert not report.valid
    assert [(p.section, p.row) for p in report.problems if "nested" in p.message] == [("product", 2)]


# -- v1.0 csv_backup -----------------------------------------------------------------------------------------
def test_csv_backup_restores_its_columns_and_defaults_the_rest(legacy_source, backup_env):
    path = write_csv_backup(backup_env / "csv_backup_20250901_120000.json", csv_document())
    fresh_database()
    with connections["default"].cursor() as cursor:
        cursor.execute("INSERT INTO externalagent VALUES (7, 'kept', 'https://a', 1, 'signals', 'mcp', "
                       "'2025-01-01 00:00:00.000000')")
    agents = table_state()["externalagent"]

    result = services.backup_restore(file=str(path), allow_unsigned=True)

    assert result.format == "legacy v1.0 csv_backup"
    assert result.restored == {"tenant": 4, "product": 60, "product_embeddings": 0}
    assert result.defaulted == {"tenant": ["custom_prompt", "web_grounding_prompt", "enable_web_context"]}
    stamp = (CSV_TIME.replace("T", " "), "text")
    state = table_state()
    expected_tenants = [(row[0], row[1], row[2], (None, "null"), (None, "null"), (0, "integer"), stamp)
                        for row in legacy_source["tenant"]]
    assert state["tenant"] == expected_tenants
    assert state["product"] == [row[:8] + (stamp,) for row in legacy_source["product"]]
    assert [row for row in state["product"] if row[0][0] == 3][0][3] == (None, "null")
    assert state["product_embeddings"] == []
    assert state["externalagent"] == agents  # a csv_backup has no agents: they are left alone
    assert_fts_rebuilt()
    assert any("product_embeddings" in note for note in result.notes)


# -- strict validation and refused restores ------------------------------------------------------------------
def _truncated_gzip(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _orphan_product(document: dict[str, Any]) -> None:
    document["products"][4]["tenant_id"] = 999


def _wrong_counts(document: dict[str, Any]) -> None:
    document["backup_metadata"]["data_counts"]["products"] = 61


def _short_embedding(document: dict[str, Any]) -> None:
    document["product_embeddings"][2]["embedding"] = document["product_embeddings"][2]["embedding"][:-1]


def _missing_name(document: dict[str, Any]) -> None:
    del document["products"][9]["name"]


def _duplicate_slug(document: dict[str, Any]) -> None:
    document["tenants"][1]["slug"] = document["tenants"][0]["slug"]


def _text_price(document: dict[str, Any]) -> None:
    document["products"][7]["price_cpm"] = "12.5"


CORRUPTIONS = {
    "truncated gzip": (None, _truncated_gzip, ("file", None), "truncated"),
    "product without its tenant": (_orphan_product, None, ("product", 5), "999"),
    "wrong data_counts": (_wrong_counts, None, ("product", None), "61"),
    "embedding of the wrong length": (_short_embedding, None, ("product_embeddings", 3), "needs"),
    "missing required field": (_missing_name, None, ("product", 10), "missing field name"),
    "duplicate slug": (_duplicate_slug, None, ("tenant", 2), "duplicate"),
    "text where a number belongs": (_text_price, None, ("product", 8), "price_cpm"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupted_v2_file_is_invalid_and_refused_with_the_database_unchanged(legacy_source, backup_env, case):
    edit_document, edit_file, (section, row), words = CORRUPTIONS[case]
    document = v2_document()
    if edit_document:
        edit_document(document)
    path = write_v2(backup_env / "comprehensive_backup_20250902_174646.json.gz", document)
    if edit_file:
        edit_file(path)
    app_before = (backup_env / "data" / "app_settings.json").read_bytes()

    report = services.backup_validate(file=str(path))
    assert not report.valid
    assert any(p.section == section and p.row == row and words in p.message for p in report.problems), \
        report.problems

    # The database's unique index refuses a duplicate slug during the restore; the rest is refused by the checks.
    with pytest.raises(RestoreError if case == "duplicate slug" else InvalidBackup):
        services.backup_restore(file=str(path), safety_backup=False, allow_unsigned=True)
    with pytest.raises(InvalidBackup):  # without --allow-unsigned it is validated first: invalid, not unsigned
        services.backup_restore(file=str(path), safety_backup=False)
    assert table_state() == legacy_source
    assert (backup_env / "data" / "app_settings.json").read_bytes() == app_before

    out = StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("backup_validate", str(path), stdout=out, stderr=StringIO())
    assert excinfo.value.returncode == 2
    assert "INVALID" in out.getvalue()


def test_corrupted_v1_file_is_refused_with_the_database_unchanged(legacy_source, backup_env):
    document = v1_full_document()
    document["product_embeddings"][1]["embedding"] = document["product_embeddings"][1]["embedding"][:-8]
    path = write_v1_full(backup_env / "full_backup_20250831_091502.json.gz", document)
    report = services.backup_validate(file=str(path))
    assert [(p.section, p.row) for p in report.problems] == [("product_embeddings", 2)]
    with pytest.raises(InvalidBackup, match="needs"):
        services.backup_restore(file=str(path), safety_backup=False)
    assert table_state() == legacy_source


def test_restore_command_exits_2_on_an_invalid_legacy_file(legacy_source, backup_env):
    document = v2_document()
    _orphan_product(document)
    path = write_v2(backup_env / "comprehensive_backup_20250902_174646.json.gz", document)
    with pytest.raises(CommandError) as excinfo:
        call_command("backup_restore", str(path), "--force", "--no-safety-backup", stdout=StringIO(),
                     stderr=StringIO())
    assert excinfo.value.returncode == 2
    assert table_state() == legacy_source


# -- the other commands ----------------------------------------------------------------------------------------
def test_dry_run_and_validate_only_change_nothing(legacy_source, backup_env):
    document = v2_document(file_settings={"changed": True})
    for tenant in document["tenants"]:
        tenant["name"] = tenant["name"] + " (old)"
    path = write_v2(backup_env / "comprehensive_backup_20250902_174646.json.gz", document)
    app_before = (backup_env / "data" / "app_settings.json").read_bytes()
    result = services.backup_restore(file=str(path), dry_run=True)
    assert result.dry_run and result.changes["tenant"].changed == 4
    out = StringIO()
    call_command("backup_restore", str(path), "--validate-only", stdout=out, stderr=StringIO())
    assert "valid" in out.getvalue()
    assert table_state() == legacy_source
    assert (backup_env / "data" / "app_settings.json").read_bytes() == app_before


def test_create_schema_restores_a_legacy_file_into_an_empty_database(legacy_source, backup_env):
    from .helpers import drop_schema

    path = write_v2(backup_env / "comprehensive_backup_20250902_174646.json.gz", v2_document())
    drop_schema("default")
    result = services.backup_restore(file=str(path), allow_unsigned=True, create_schema=True)
    assert result.schema_created
    assert table_state() == with_is_stale_null_as_zero(legacy_source)
    assert_fts_rebuilt()


def test_backup_list_shows_legacy_files_with_format_and_counts(legacy_source, backup_env):
    folder = backup_env / "backups"
    folder.mkdir(exist_ok=True)
    write_v2(folder / "comprehensive_backup_20250902_174646.json.gz", v2_document())
    write_v1_full(folder / "full_backup_20250831_091502.json.gz", v1_full_document())
    write_csv_backup(folder / "csv_backup_20250901_120000.json", csv_document())
    native = services.backup_create(compression="gzip")

    entries = {e.name: e for e in services.backup_list()}
    v2 = entries["comprehensive_backup_20250902_174646.json.gz"]
    assert (v2.format, v2.compression, v2.error) == ("legacy v2.0", "gzip", None)
    assert v2.counts == {"tenant": 4, "product": 60, "externalagent": 2, "product_embeddings": 12}
    v1 = entries["full_backup_20250831_091502.json.gz"]
    assert v1.format == "legacy v1.0 full_backup" and v1.created_at == "2025-08-31T09:15:02.123456"
    # v1 files announce no counts: the listing reads the rows to count them
    assert v1.counts == {"tenant": 4, "product": 60, "externalagent": 2, "product_embeddings": 12}
    csv = entries["csv_backup_20250901_120000.json"]
    assert (csv.format, csv.compression) == ("legacy v1.0 csv_backup", "none")
    assert set(csv.counts) == {"tenant", "product"}
    assert entries[native.name].format == "adcp-backup v3"

    out = StringIO()
    call_command("backup_list", stdout=out)
    text = out.getvalue()
    assert "legacy v2.0" in text and "tenant 4, product 60, externalagent 2, product_embeddings 12" in text
    assert "legacy v1.0 full_backup" in text and "legacy v1.0 csv_backup" in text
    out = StringIO()
    call_command("backup_list", "--json", stdout=out)
    listed = {b["name"]: b for b in json.loads(out.getvalue())["backups"]}
    assert listed["comprehensive_backup_20250902_174646.json.gz"]["counts"]["product"] == 60
    # "latest" is the newest by the time inside the files: here the native backup just made
    assert services.backup_restore_plan(file="latest").name == native.name


def test_no_output_of_any_command_shows_a_legacy_secret(legacy_source, backup_env):
    (backup_env / "backups").mkdir(exist_ok=True)
    v2 = write_v2(backup_env / "backups" / "comprehensive_backup_20250902_174646.json.gz", v2_document())
    v1 = write_v1_full(backup_env / "full_backup_20250831_091502.json.gz", v1_full_document())
    outputs = []
    for args in (["backup_validate", str(v2)], ["backup_validate", str(v2), "--json"], ["backup_list"],
                 ["backup_list", "--json"], ["backup_info", "--json"],
                 ["backup_restore", str(v2), "--force", "--dry-run"],
                 ["backup_restore", str(v2), "--force", "--dry-run", "--json"],
                 ["backup_restore", str(v1), "--force", "--no-safety-backup", "--allow-unsigned"],
                 ["backup_restore", str(v1), "--force", "--no-safety-backup", "--allow-unsigned", "--json"]):
        out, err = StringIO(), StringIO()
        call_command(*args, stdout=out, stderr=err)
        outputs.append(out.getvalue() + err.getvalue())
    text = "\n".join(outputs)
    assert "GEMINI_API_KEY" in text
    for secret in SECRETS:
        assert secret not in text
    log = Path(settings.LOG_FILE)
    if log.exists():
        assert not any(secret in log.read_text(encoding="utf-8") for secret in SECRETS)


def test_content_not_a_legacy_format_is_not_taken_for_one(backup_env):
    path = backup_env / "other.json"
    path.write_text(json.dumps({"tenants": [], "version": "1.0"}), encoding="utf-8")
    report = services.backup_validate(file=str(path))
    assert not report.valid and "nor a known legacy format" in report.problems[0].message
    gz = backup_env / "renamed.jsonl"  # a v2.0 file under any name is still recognised by its content
    gz.write_bytes(gzip.compress(json.dumps({"backup_metadata": {"version": "2.0"}}, indent=2).encode()))
    assert services.backup_validate(file=str(gz)).format == "legacy v2.0"


@pytest.mark.parametrize("kind", ["v2 plain", "v1 gzip", "csv plain"])
def test_truncated_files_of_every_format_are_invalid_and_refused(legacy_source, backup_env, kind):
    if kind == "v2 plain":
        path = write_v2(backup_env / "comprehensive_backup_20250902_174646.json", v2_document(), compress=False)
    elif kind == "v1 gzip":
        path = write_v1_full(backup_env / "full_backup_20250831_091502.json.gz", v1_full_document())
    else:
        path = write_csv_backup(backup_env / "csv_backup_20250901_120000.json", csv_document())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    report = services.backup_validate(file=str(path))
    assert not report.valid
    assert any(p.section == "file" and ("truncated" in p.message or "not valid JSON" in p.message)
               for p in report.problems), report.problems
    with pytest.raises(InvalidBackup):
        services.backup_restore(file=str(path), safety_backup=False)
    assert table_state() == legacy_source


def test_rows_after_an_entry_that_is_not_an_object_keep_their_numbers(legacy_source, backup_env):
    v1 = v1_full_document()
    v1["tenants"][0]["products"][1] = "not a product"
    del v1["tenants"][0]["products"][3]["name"]
    del v1["tenants"][1]["slug"]
    v1_path = write_v1_full(backup_env / "full_backup_20250831_091502.json.gz", v1)
    v2 = v2_document()
    v2["products"][2] = 5
    del v2["products"][5]["name"]
    v2_path = write_v2(backup_env / "comprehensive_backup_20250902_174646.json.gz", v2)

    v1_problems = {(p.section, p.row, p.message) for p in services.backup_validate(file=str(v1_path)).problems}
    assert ("product", 2, "the entry is not an object") in v1_problems
    assert ("product", 4, "missing field name") in v1_problems
    assert ("tenant", 2, "missing field slug") in v1_problems
    v2_problems = {(p.section, p.row, p.message) for p in services.backup_validate(file=str(v2_path)).problems}
    assert ("product", 3, "the entry is not an object") in v2_problems
    assert ("product", 6, "missing field name") in v2_problems
    for path in (v1_path, v2_path):
        with pytest.raises(InvalidBackup):
            services.backup_restore(file=str(path), safety_backup=False)
    assert table_state() == legacy_source
