"""Backup and restore through the services on a real SQLite file database: every row, value and type."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from django.db import connections

from adcp_backup import demo, services
from adcp_backup.exceptions import InvalidBackup, SchemaMismatch
from adcp_backup.settings_files import REDACTED

from .helpers import drop_schema, fts_match, schema_sql, table_state


def read_lines(path: str) -> list[dict | list]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_round_trip_restores_every_value_and_type(seeded, compression):
    seeded()
    before = table_state()
    fts_before = {term: fts_match(term) for term in ("homepage", "東京の広告枠", "Café", "backslash")}
    assert all(fts_before.values())

    result = services.backup_create(compression=compression)
    assert result.counts == {"tenant": 4, "product": 60, "externalagent": 2, "product_embeddings": 12}
    assert Path(result.path).name == result.name
    assert result.name.endswith({"none": ".jsonl", "gzip": ".jsonl.gz", "zstd": ".jsonl.zst"}[compression])

    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE product SET name = 'changed', price_cpm = 1 WHERE id <= 10")
        cursor.execute("DELETE FROM product_embeddings WHERE id > 6")
        cursor.execute("INSERT INTO tenant (id, name, slug, enable_web_context, created_at) "
                       "VALUES (99, 'x', 'x', 0, '2020-01-01 00:00:00')")
    assert table_state() != before

    restored = services.backup_restore(file=result.name)
    assert restored.restored == result.counts
    assert table_state() == before
    assert {term: fts_match(term) for term in fts_before} == fts_before
    with connections["default"].cursor() as cursor:
        cursor.execute("INSERT INTO products_fts(products_fts) VALUES('integrity-check')")
        cursor.execute("PRAGMA foreign_key_check")
        assert cursor.fetchall() == []


def test_restored_floats_blobs_and_text_are_bit_identical(seeded):
    seeded()
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE product SET price_cpm = ? WHERE id = 1", [0.1 + 0.2])
        cursor.execute("UPDATE product SET price_cpm = ? WHERE id = 2", [5e-324])
        cursor.execute("UPDATE product SET description = ? WHERE id = 3", ["\x00 nul, \\ and \"q\" 𝄞"])
    before = table_state()
    result = services.backup_create(compression="gzip")
    with connections["default"].cursor() as cursor:
        cursor.execute("DELETE FROM product_embeddings")
        cursor.execute("UPDATE product SET price_cpm = 0, description = NULL")
    services.backup_restore(file=result.name, safety_backup=False)
    after = table_state()
    assert after == before
    assert [r for r in after["product"] if r[0][0] == 1][0][4] == (0.1 + 0.2, "real")


def test_backup_file_layout_header_checksums_trailer_and_redaction(seeded, backup_env):
    seeded()
    result = services.backup_create(compression="gzip")
    lines = read_lines(result.path)
    header, trailer = lines[0], lines[-1]
    assert header["kind"] == "header" and header["format"] == "adcp-backup" and header["version"] == 3
    assert header["created_at"].endswith("+00:00")
    assert header["source"]["engine"] == "sqlite"
    assert header["secrets"] == "redacted"
    assert header["counts"] == result.counts
    assert any("CREATE VIRTUAL TABLE products_fts" in s for s in header["schema"]["ddl"])
    assert any("CREATE TRIGGER products_fts_insert" in s for s in header["schema"]["ddl"])
    assert trailer["kind"] == "trailer" and trailer["counts"] == result.counts
    kinds = [line["kind"] if isinstance(line, dict) else "row" for line in lines]
    assert kinds.count("table") == 4 and kinds.count("table_end") == 4
    assert kinds.count("row") == sum(result.counts.values())
    env = next(line for line in lines if isinstance(line, dict) and line["kind"] == "environment")
    assert env["variables"]["GEMINI_API_KEY"] == REDACTED
    assert env["variables"]["EMBEDDINGS_PROVIDER"] == "gemini"
    assert "hunter2" not in env["variables"]["SERVICE_BASE_URL"]
    assert "admin" in env["variables"]["SERVICE_BASE_URL"]
    raw = gzip.open(result.path).read()
    assert b"AIza-test-secret-value" not in raw and b"hunter2" not in raw
    files = [line for line in lines if isinstance(line, dict) and line["kind"] == "file"]
    assert {Path(f["path"]).name for f in files} == {"app_settings.json", "tenant_settings.json"}


def test_backup_never_modifies_settings_files_and_restore_puts_them_back(seeded, backup_env):
    seeded()
    app = backup_env / "data" / "app_settings.json"
    original = app.read_bytes()
    stat_before = app.stat()
    result = services.backup_create()
    assert app.read_bytes() == original
    assert app.stat().st_mtime_ns == stat_before.st_mtime_ns
    app.write_bytes(b'{"changed": true}')
    (backup_env / "data" / "tenant_settings.json").unlink()
    restored = services.backup_restore(file=result.name, safety_backup=False)
    assert app.read_bytes() == original
    assert json.loads((backup_env / "data" / "tenant_settings.json").read_text())["tenant_prompts"]
    assert {entry["action"] for entry in restored.files} == {"written"}


def test_two_backups_in_the_same_second_never_collide(seeded):
    seeded()
    names = {services.backup_create(compression="none").name for _ in range(3)}
    assert len(names) == 3
    assert [e.name for e in services.backup_list()] and len(services.backup_list()) == 3


def test_dry_run_reports_changes_and_changes_nothing(seeded, backup_env):
    seeded()
    result = services.backup_create()
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE product SET name = 'edited' WHERE id IN (1, 2, 3)")
        cursor.execute("DELETE FROM product_embeddings WHERE product_id IN (4, 5)")
        cursor.execute("DELETE FROM product WHERE id IN (4, 5)")
        cursor.execute("INSERT INTO externalagent VALUES (50, 'n', 'u', 1, 't', 'mcp', '2020-01-01 00:00:00')")
    before = table_state()
    app = backup_env / "data" / "app_settings.json"
    app.write_bytes(b"{}")
    report = services.backup_restore(file=result.name, dry_run=True)
    assert report.dry_run and report.safety_backup is None
    assert report.changes["product"].added == 2
    assert report.changes["product"].changed == 3
    assert report.changes["product"].removed == 0
    assert report.changes["externalagent"].removed == 1
    assert report.changes["product_embeddings"].added == 2
    assert table_state() == before
    assert app.read_bytes() == b"{}"
    assert any(f["action"] == "would be written" for f in report.files)


def test_restore_takes_a_safety_backup_of_what_it_replaces(seeded):
    seeded()
    result = services.backup_create()
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE tenant SET name = 'before the restore' WHERE id = 1")
    state = table_state()
    restored = services.backup_restore(file=result.name)
    assert restored.safety_backup
    safety = next(e for e in services.backup_list() if e.name == restored.safety_backup)
    assert safety.purpose == "safety"
    services.backup_restore(file=restored.safety_backup, safety_backup=False)
    assert table_state() == state
    # "latest" never means a safety backup
    assert services.backup_restore_plan(file="latest").name == result.name


def test_restore_into_an_empty_database_creates_schema_fts_and_triggers(seeded):
    seeded()
    schema_before = schema_sql()
    state = table_state()
    fts = fts_match("homepage")
    result = services.backup_create()
    drop_schema("default")
    restored = services.backup_restore(file=result.name, create_schema=True)
    assert restored.schema_created
    assert schema_sql() == schema_before
    assert table_state() == state
    assert fts_match("homepage") == fts
    with connections["default"].cursor() as cursor:  # the triggers work after the restore
        cursor.execute("INSERT INTO product (id, tenant_id, name, price_cpm, delivery_type, created_at) "
                       "VALUES (5000, 1, 'zebra unicorn', 1.0, 'guaranteed', '2025-01-01 00:00:00')")
    assert fts_match("unicorn") == [5000]


def test_missing_tables_without_create_schema_are_refused(seeded):
    seeded()
    result = services.backup_create()
    with connections["default"].cursor() as cursor:
        cursor.execute("DROP TABLE product_embeddings")
    with pytest.raises(SchemaMismatch, match="product_embeddings"):
        services.backup_restore(file=result.name)


def test_schema_mismatch_is_refused_before_any_write(seeded):
    seeded()
    result = services.backup_create()
    with connections["default"].cursor() as cursor:
        cursor.execute("ALTER TABLE product DROP COLUMN targeting_json")
    state = table_state()
    with pytest.raises(SchemaMismatch, match="targeting_json"):
        services.backup_restore(file=result.name)
    assert table_state() == state
    assert len(services.backup_list()) == 1  # not even a safety backup was written


def test_sqlite_sequence_is_restored_and_new_rows_get_fresh_ids(seeded):
    seeded()
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE sqlite_sequence SET seq = 500 WHERE name = 'product_embeddings'")
    result = services.backup_create()
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE sqlite_sequence SET seq = 7 WHERE name = 'product_embeddings'")
    services.backup_restore(file=result.name, safety_backup=False)
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = 'product_embeddings'")
        assert cursor.fetchone()[0] == 500
        cursor.execute("INSERT INTO product_embeddings (product_id, embedding_text, embedding_hash, embedding) "
                       "VALUES (1, 't', 'h', x'00')")
        assert cursor.lastrowid == 501


def test_backup_of_a_database_without_the_tables_is_a_clear_error(adcp_schema, backup_env):
    from adcp_backup.exceptions import BackupError

    with pytest.raises(BackupError, match="lacks the tables"):
        services.backup_create()
    assert services.backup_list() == []


def test_restore_failing_on_a_unique_key_changes_nothing(seeded, backup_env):
    seeded()
    result = services.backup_create(compression="none")
    lines = Path(result.path).read_bytes().split(b"\n")
    # a second tenant with the slug of the first: the file stays well-formed, the rows break a unique key
    rows = [i for i, line in enumerate(lines) if line.startswith(b"[2,")]
    lines[rows[0]] = lines[rows[0]].replace(b'"publisher-2"', b'"publisher-1"')
    broken = _rechecksum(lines)
    target = backup_env / "broken.jsonl"
    target.write_bytes(broken)
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE tenant SET name = 'current' WHERE id = 3")
    state = table_state()
    with pytest.raises(Exception) as excinfo:
        services.backup_restore(file=str(target), safety_backup=False)
    assert "unique" in str(excinfo.value).lower() or "duplicate" in str(excinfo.value).lower()
    assert table_state() == state
    report = services.backup_validate(file=str(target))
    assert not report.valid
    assert any(p.section == "tenant" and "duplicate" in p.message for p in report.problems)


def test_restore_failing_on_a_foreign_key_changes_nothing(seeded, backup_env):
    seeded()
    result = services.backup_create(compression="none")
    lines = Path(result.path).read_bytes().split(b"\n")
    table_idx = next(i for i, line in enumerate(lines) if line.startswith(b'{"kind":"table","name":"product"'))
    lines[table_idx + 1] = lines[table_idx + 1].replace(b"[1,1,", b"[1,777,", 1)
    target = backup_env / "orphan.jsonl"
    target.write_bytes(_rechecksum(lines))
    state = table_state()
    with pytest.raises(InvalidBackup, match="777"):
        services.backup_restore(file=str(target), safety_backup=False)
    assert table_state() == state
    report = services.backup_validate(file=str(target))
    assert [p.row for p in report.problems if "777" in p.message] == [1]


def _rechecksum(lines: list[bytes]) -> bytes:
    """Recompute every checksum, as a careless or malicious editor would: only the data is wrong. The trailer is
    signed again with this installation's key (as if it had leaked), so the content checks are what refuse it."""
    import hashlib

    from adcp_backup import signing

    out: list[bytes] = []
    total = hashlib.sha256()
    table_hash = None
    for line in lines:
        if not line:
            continue
        if line.startswith(b"["):
            table_hash.update(line + b"\n")
            out.append(line)
            continue
        record = json.loads(line)
        if record["kind"] == "table":
            table_hash = hashlib.sha256()
        if record["kind"] == "table_end":
            record["sha256"] = table_hash.hexdigest()
        if record["kind"] == "trailer":
            record["sha256"] = total.hexdigest()
            if "signature" in record:
                record["signature"] = signing.trailer_signature(record["sha256"], record["counts"])
            out.append(json.dumps(record, separators=(",", ":")).encode())
            continue
        encoded = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
        total.update(encoded + b"\n")
        out.append(encoded)
    return b"\n".join(out) + b"\n"


def test_demo_seed_is_deterministic_and_exercises_hard_values(seeded):
    seeded()
    first = table_state()
    demo.seed(size=demo.DemoSize(tenants=4, products=60, agents=2, embeddings=12, dim=16), reset=True)
    assert table_state() == first
    products = first["product"]
    assert any(row[3][0] is None for row in products)  # NULL descriptions
    assert any("\n" in (row[3][0] or "") for row in products)
    assert any("🚀" in row[2][0] for row in products)
    assert any("東京" in row[2][0] for row in products)
    assert all(row[4][1] == "real" for row in products)
    tenants_with_products = {row[1][0] for row in products}
    assert len(tenants_with_products) == 3  # the last tenant has none
