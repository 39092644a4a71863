"""Per-tenant backup and restore on real databases: one tenant replaced, every other row left as it was."""
from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from adcp_backup import services
from adcp_backup.exceptions import BackupError, InvalidBackup, TenantConflict, UnknownTenant

from .helpers import engine_params, fts_match, table_state
from .test_services import _rechecksum

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

TARGET = "publisher-2"  # tenant id 2: products 2, 5, 8, ... and the embeddings of products 2, 5, 8, 11


@pytest.fixture(params=engine_params())
def alias(request: pytest.FixtureRequest, seeded: Any) -> str:
    seeded(request.param)
    return request.param


# -- helpers ---------------------------------------------------------------------------------------------------
def sql(alias: str, statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connections[alias].cursor() as cursor:
        cursor.execute(statement, params or [])
        return list(cursor.fetchall()) if cursor.description else []


def _value(alias: str, cell: Any) -> Any:
    return cell[0] if connections[alias].vendor == "sqlite" else cell


def split(state: dict[str, list[tuple[Any, ...]]], alias: str, tenant_id: int) -> tuple[dict, dict]:
    """The rows of one tenant (its row, products, their embeddings) and every other row, per table."""
    owner = {_value(alias, row[0]): _value(alias, row[1]) for row in state["product"]}
    belongs = {
        "tenant": lambda row: _value(alias, row[0]) == tenant_id,
        "product": lambda row: _value(alias, row[1]) == tenant_id,
        "product_embeddings": lambda row: owner.get(_value(alias, row[1])) == tenant_id,
        "externalagent": lambda row: False,
    }
    mine = {t: [r for r in rows if belongs[t](r)] for t, rows in state.items()}
    others = {t: [r for r in rows if not belongs[t](r)] for t, rows in state.items()}
    return mine, others


def damage_target(alias: str) -> None:
    """A bad import into tenant 2: products deleted (with embeddings), edited and added, the tenant renamed."""
    sql(alias, "DELETE FROM product_embeddings WHERE product_id IN (2, 5)")
    sql(alias, "DELETE FROM product WHERE id IN (2, 5)")
    sql(alias, "UPDATE product SET name = %s, price_cpm = %s WHERE id IN (8, 11, 14)", ["imported junk", 0.5])
    sql(alias, "UPDATE product_embeddings SET is_stale = 1 WHERE product_id = 8")
    sql(alias, "INSERT INTO product (id, tenant_id, name, description, price_cpm, delivery_type, created_at) "
               "VALUES (%s, 2, %s, NULL, 1.25, 'guaranteed', '2025-09-01 00:00:00')", [500, "zebra import"])
    sql(alias, "UPDATE tenant SET name = %s WHERE id = 2", ["Broken by the import"])


def change_others(alias: str) -> None:
    """Work done on other tenants after the backup, which a tenant restore must keep."""
    sql(alias, "UPDATE product SET name = %s WHERE id = 1", ["tenant one renamed this"])
    sql(alias, "INSERT INTO product (id, tenant_id, name, description, price_cpm, delivery_type, created_at) "
               "VALUES (%s, 3, %s, %s, 9.5, 'guaranteed', '2025-09-02 00:00:00')", [501, "unicorn banner", "new"])
    sql(alias, "DELETE FROM product_embeddings WHERE product_id = 3")
    sql(alias, "UPDATE externalagent SET name = %s WHERE id = 1", ["agent edited after the backup"])
    sql(alias, "UPDATE tenant SET custom_prompt = %s WHERE id = 4", ["tenant four edited"])


# -- restore one tenant from a full backup ---------------------------------------------------------------------
def test_one_tenant_restored_from_a_full_backup_leaves_every_other_row_alone(alias, backup_env):
    backup = services.backup_create(database=alias)
    at_backup, _ = split(table_state(alias), alias, 2)
    damage_target(alias)
    change_others(alias)
    app_settings = backup_env / "data" / "app_settings.json"
    app_settings.write_bytes(b'{"edited": "after the backup"}')
    _, others_before = split(table_state(alias), alias, 2)

    result = services.backup_restore(file=backup.name, database=alias, tenants=[TARGET])

    mine_after, others_after = split(table_state(alias), alias, 2)
    assert mine_after == at_backup
    assert others_after == others_before
    assert result.restored == {"tenant": 1, "product": 20, "product_embeddings": 4}
    assert result.files == []
    assert app_settings.read_bytes() == b'{"edited": "after the backup"}'
    assert result.safety_backup  # a backup of the tenant as it was, before it was replaced
    safety = next(e for e in services.backup_list() if e.name == result.safety_backup)
    assert safety.purpose == "safety" and safety.scope["tenants"] == [TARGET]
    assert safety.counts == {"tenant": 1, "product": 19, "product_embeddings": 2}
    # new rows get ids that collide with nothing
    sql(alias, "INSERT INTO product_embeddings (product_id, embedding_text, embedding_hash, embedding) "
               "VALUES (2, 't', 'h', %s)", [b"\x00\x01"])
    assert sql(alias, "SELECT MAX(id) FROM product_embeddings")[0][0] > 12
    if connections[alias].vendor == "sqlite":
        sql(alias, "INSERT INTO products_fts(products_fts) VALUES('integrity-check')")
        assert fts_match("zebra") == []  # the imported product left the index
        assert fts_match("unicorn") == [501]  # another tenant's new product is still there
        assert fts_match("junk") == []  # the edited products are indexed under their restored names
        assert all(fts_match(f'"{i}"') == [i] for i in (2, 5, 8, 11, 14))  # names end with "#<id>"


def test_a_deleted_tenant_comes_back_with_its_products(alias):
    backup = services.backup_create(database=alias)
    at_backup, _ = split(table_state(alias), alias, 3)
    sql(alias, "DELETE FROM product_embeddings WHERE product_id IN (SELECT id FROM product WHERE tenant_id = 3)")
    sql(alias, "DELETE FROM product WHERE tenant_id = 3")
    sql(alias, "DELETE FROM tenant WHERE id = 3")
    _, others_before = split(table_state(alias), alias, 3)
    result = services.backup_restore(file=backup.name, database=alias, tenants=["publisher-3"])
    mine, others = split(table_state(alias), alias, 3)
    assert mine == at_backup and others == others_before
    assert result.safety_backup is None  # nothing of the tenant was in the database to keep


def test_sqlite_sequence_is_never_lowered_by_a_tenant_restore(seeded):
    seeded("default")
    backup = services.backup_create()
    sql("default", "UPDATE sqlite_sequence SET seq = 900 WHERE name = 'product_embeddings'")
    services.backup_restore(file=backup.name, tenants=[TARGET], safety_backup=False)
    assert sql("default", "SELECT seq FROM sqlite_sequence WHERE name = 'product_embeddings'") == [(900,)]


# -- conflicts ---------------------------------------------------------------------------------------------------
def _refused(alias: str, backup: str, tenants: list[str] | None = None) -> TenantConflict:
    before = table_state(alias)
    files = {e.name for e in services.backup_list()}
    with pytest.raises(TenantConflict) as excinfo:
        services.backup_restore(file=backup, database=alias, tenants=tenants or [TARGET])
    assert table_state(alias) == before
    assert {e.name for e in services.backup_list()} == files  # not even a safety backup
    return excinfo.value


def test_a_product_now_owned_by_another_tenant_is_a_conflict(alias):
    backup = services.backup_create(database=alias)
    sql(alias, "UPDATE product SET tenant_id = 1 WHERE id = 14")
    error = _refused(alias, backup.name)
    assert [(c.table, c.id) for c in error.conflicts] == [("product", 14)]
    assert "publisher-1" in str(error)


def test_a_slug_now_used_by_another_tenant_id_is_a_conflict(alias):
    backup = services.backup_create(database=alias)
    sql(alias, "DELETE FROM product_embeddings WHERE product_id IN (SELECT id FROM product WHERE tenant_id = 2)")
    sql(alias, "DELETE FROM product WHERE tenant_id = 2")
    sql(alias, "DELETE FROM tenant WHERE id = 2")
    sql(alias, "UPDATE tenant SET slug = %s WHERE id = 4", [TARGET])  # the slug went to another tenant
    error = _refused(alias, backup.name)
    assert [(c.table, c.id) for c in error.conflicts] == [("tenant", 2)]
    assert "tenant id 4" in error.conflicts[0].message


def test_a_tenant_id_now_carrying_another_slug_is_a_conflict(alias):
    backup = services.backup_create(database=alias)
    sql(alias, "UPDATE tenant SET slug = 'someone-else' WHERE id = 2")
    error = _refused(alias, backup.name)
    assert [(c.table, c.id) for c in error.conflicts] == [("tenant", 2)]
    assert "'someone-else'" in error.conflicts[0].message


def test_an_embedding_now_attached_outside_the_scope_is_a_conflict(alias):
    backup = services.backup_create(database=alias)
    sql(alias, "UPDATE product_embeddings SET product_id = 40 WHERE id = 5")  # product 40 belongs to tenant 1
    error = _refused(alias, backup.name)
    assert [(c.table, c.id) for c in error.conflicts] == [("product_embeddings", 5)]
    assert "product 40" in error.conflicts[0].message


def test_an_embedding_whose_product_is_not_in_a_tenant_backup_is_a_conflict(alias, backup_env):
    backup = services.backup_create(database=alias, tenants=[TARGET], compression="none")
    lines = Path(backup.path).read_bytes().split(b"\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b'{"kind":"table","name":"product_embeddings"'))
    assert lines[start + 1].startswith(b"[2,2,")
    lines[start + 1] = lines[start + 1].replace(b"[2,2,", b"[2,40,", 1)
    edited = backup_env / "edited.jsonl"
    edited.write_bytes(_rechecksum(lines))
    error = _refused(alias, str(edited))
    assert [(c.table, c.id) for c in error.conflicts] == [("product_embeddings", 2)]
    assert "not in the backup" in str(error)


def test_conflicts_are_listed_together(alias):
    backup = services.backup_create(database=alias)
    sql(alias, "UPDATE product SET tenant_id = 1 WHERE id IN (14, 17)")
    sql(alias, "UPDATE product_embeddings SET product_id = 40 WHERE id = 5")
    error = _refused(alias, backup.name)
    assert sorted((c.table, c.id) for c in error.conflicts) == [("product", 14), ("product", 17),
                                                                 ("product_embeddings", 5)]


# -- tenant backups ------------------------------------------------------------------------------------------------
def test_a_tenant_backup_holds_that_tenant_only_and_restores_it(alias, backup_env):
    full = table_state(alias)
    at_backup, _ = split(full, alias, 2)
    backup = services.backup_create(database=alias, tenants=[TARGET], compression="none")
    assert backup.counts == {"tenant": 1, "product": 20, "product_embeddings": 4}
    assert backup.scope == {"tenants": [TARGET], "tenant_ids": [2], "global": []}
    records = [json.loads(line) for line in Path(backup.path).read_bytes().splitlines()]
    assert records[0]["scope"] == backup.scope
    assert not any(isinstance(r, dict) and r["kind"] in ("file", "environment") for r in records)
    assert sorted(r["name"] for r in records if isinstance(r, dict) and r["kind"] == "table") == [
        "product", "product_embeddings", "tenant"]

    damage_target(alias)
    change_others(alias)
    _, others_before = split(table_state(alias), alias, 2)
    result = services.backup_restore(file=backup.name, database=alias)  # a tenant backup: its tenants
    mine, others = split(table_state(alias), alias, 2)
    assert mine == at_backup and others == others_before
    assert result.restored == backup.counts


def test_a_tenant_backup_with_global_parts_restores_them_too(alias, backup_env):
    backup = services.backup_create(database=alias, tenants=["publisher-1", "publisher-3"],
                                    with_global=["externalagent,settings"])
    assert backup.scope["global"] == ["externalagent", "settings"]
    assert set(backup.counts) == {"tenant", "product", "externalagent", "product_embeddings"}
    state = table_state(alias)
    app_settings = backup_env / "data" / "app_settings.json"
    original = app_settings.read_bytes()
    app_settings.write_bytes(b"{}")
    sql(alias, "UPDATE externalagent SET name = 'edited' WHERE id = 2")
    sql(alias, "UPDATE product SET name = 'edited' WHERE id IN (1, 3, 2)")  # tenants 1, 3 and 2
    edited = table_state(alias)
    result = services.backup_restore(file=backup.name, database=alias, safety_backup=False)
    after = table_state(alias)
    assert after["externalagent"] == state["externalagent"]
    assert app_settings.read_bytes() == original
    for tenant_id in (1, 3):  # restored
        assert split(after, alias, tenant_id)[0] == split(state, alias, tenant_id)[0]
    assert split(after, alias, 2)[0] == split(edited, alias, 2)[0]  # not in the file: left as it is
    assert split(after, alias, 2)[0] != split(state, alias, 2)[0]
    assert result.restored["externalagent"] == 2


def test_dry_run_reports_the_tenants_changes_and_changes_nothing(alias):
    backup = services.backup_create(database=alias)
    damage_target(alias)
    change_others(alias)
    before = table_state(alias)
    report = services.backup_restore(file=backup.name, database=alias, tenants=[TARGET], dry_run=True)
    assert report.dry_run and report.safety_backup is None
    assert table_state(alias) == before
    product, embeddings, tenant = (report.changes[t] for t in ("product", "product_embeddings", "tenant"))
    assert (product.before, product.after, product.added, product.removed, product.changed) == (19, 20, 2, 1, 3)
    assert (embeddings.added, embeddings.removed, embeddings.changed) == (2, 0, 1)
    assert (tenant.added, tenant.removed, tenant.changed) == (0, 0, 1)
    assert "externalagent" not in report.changes


def test_backup_file_tenants_lists_tenants_with_product_counts(alias):
    backup = services.backup_create(database=alias, compression="zstd")
    tenants = services.backup_file_tenants(file=backup.name)
    assert [(t["id"], t["slug"], t["products"]) for t in tenants] == [
        (1, "publisher-1", 20), (2, "publisher-2", 20), (3, "publisher-3", 20), (4, "publisher-4", 0)]
    assert tenants[0]["name"].startswith("Publisher 1")


# -- mistakes ------------------------------------------------------------------------------------------------------
def test_unknown_slugs_are_clear_errors_and_change_nothing(alias):
    backup = services.backup_create(database=alias)
    names = {e.name for e in services.backup_list()}
    with pytest.raises(UnknownTenant, match="'nope'"):
        services.backup_create(database=alias, tenants=["nope"])
    assert {e.name for e in services.backup_list()} == names
    state = table_state(alias)
    with pytest.raises(UnknownTenant, match="'nope'"):
        services.backup_restore(file=backup.name, database=alias, tenants=[TARGET, "nope"])
    assert table_state(alias) == state
    with pytest.raises(BackupError, match="--with-global"):
        services.backup_create(database=alias, with_global=["externalagent"])
    with pytest.raises(BackupError, match="'agents'"):
        services.backup_create(database=alias, tenants=[TARGET], with_global=["agents"])


def test_commands_take_tenant_options_and_exit_1_on_refusal(seeded, backup_env):
    seeded("default")
    out = json.loads(_call("backup_create", "--tenant", TARGET, "--with-global", "externalagent", "--json"))
    assert out["scope"] == {"tenants": [TARGET], "tenant_ids": [2], "global": ["externalagent"]}
    full = json.loads(_call("backup_create", "--json"))
    with pytest.raises(CommandError) as excinfo:
        _call("backup_create", "--tenant", "nope")
    assert excinfo.value.returncode == 1 and "'nope'" in str(excinfo.value)

    sql("default", "UPDATE product SET name = 'junk' WHERE id = 2")
    restored = json.loads(_call("backup_restore", full["name"], "--tenant", TARGET, "--force", "--json"))
    assert restored["restored"] == {"tenant": 1, "product": 20, "product_embeddings": 4}
    assert sql("default", "SELECT name FROM product WHERE id = 2")[0][0] != "junk"

    sql("default", "UPDATE product SET tenant_id = 1 WHERE id = 14")
    state = table_state()
    with pytest.raises(CommandError) as excinfo:
        _call("backup_restore", full["name"], "--tenant", TARGET, "--force")
    assert excinfo.value.returncode == 1 and "product id 14" in str(excinfo.value)
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("backup_restore", full["name"], "--tenant", TARGET, "--force", "--json", stdout=out,
                     stderr=StringIO())
    refusal = json.loads(out.getvalue())
    assert refusal["type"] == "TenantConflict"
    assert [(c["table"], c["id"]) for c in refusal["conflicts"]] == [("product", 14)]
    assert table_state() == state


def _call(*args: str) -> str:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue()


def test_restore_confirmation_names_the_tenants_and_refuses_without_a_terminal(seeded, backup_env):
    seeded("default")
    backup = services.backup_create()
    plan = services.backup_restore_plan(file=backup.name, tenants=[TARGET])
    assert plan.scope == {"tenants": [TARGET], "global": []}
    assert plan.current_counts == {"tenant": 1, "product": 20, "product_embeddings": 4}
    state = table_state()
    err = StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("backup_restore", backup.name, "--tenant", TARGET, stdin=StringIO("yes\n"),
                     stdout=StringIO(), stderr=err)
    assert excinfo.value.returncode == 1 and "no terminal" in str(excinfo.value)
    assert f"tenants {TARGET}" in err.getvalue() and "other tenants are left as they are" in err.getvalue()
    assert table_state() == state


def test_latest_and_the_newest_backup_are_full_backups_never_tenant_backups(seeded, backup_env):
    seeded("default")
    full = services.backup_create()
    services.backup_create(tenants=[TARGET])
    assert services.backup_list()[0].scope["tenants"] == [TARGET]  # the tenant backup is the newest file
    assert services.backup_restore_plan(file="latest").name == full.name
    assert services.backup_info().newest["name"] == full.name


def test_two_tenants_at_once(alias):
    backup = services.backup_create(database=alias)
    state = table_state(alias)
    damage_target(alias)
    sql(alias, "UPDATE product SET name = 'junk' WHERE tenant_id = 3")
    sql(alias, "UPDATE product SET name = 'kept' WHERE id = 1")  # tenant 1: not restored
    edited = table_state(alias)
    result = services.backup_restore(file=backup.name, database=alias, tenants=["publisher-3", TARGET],
                                     safety_backup=False)
    after = table_state(alias)
    assert result.restored == {"tenant": 2, "product": 40, "product_embeddings": 8}
    for tenant_id in (2, 3):
        assert split(after, alias, tenant_id)[0] == split(state, alias, tenant_id)[0]
    for tenant_id in (1, 4):
        assert split(after, alias, tenant_id)[0] == split(edited, alias, tenant_id)[0]
    assert after["externalagent"] == edited["externalagent"]


def test_a_row_failing_its_checks_mid_restore_rolls_everything_back(alias, backup_env):
    backup = services.backup_create(database=alias, tenants=[TARGET], compression="none")
    lines = Path(backup.path).read_bytes().split(b"\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b'{"kind":"table","name":"product"'))
    row = json.loads(lines[start + 5])
    row[2] = None  # product.name is NOT NULL
    lines[start + 5] = json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()
    broken = backup_env / "broken.jsonl"
    broken.write_bytes(_rechecksum(lines))
    damage_target(alias)
    before = table_state(alias)
    with pytest.raises(InvalidBackup, match="name is NULL") as excinfo:
        services.backup_restore(file=str(broken), database=alias, safety_backup=False)
    assert [p.row for p in excinfo.value.problems] == [5]  # numbered as in the file
    assert table_state(alias) == before
    if connections[alias].vendor == "sqlite":
        sql(alias, "INSERT INTO products_fts(products_fts) VALUES('integrity-check')")
        assert fts_match("zebra") == [500]


def test_one_tenant_restored_from_a_legacy_v2_file(seeded, backup_env):
    from .legacy_fixtures import v2_document, write_v2
    from .test_legacy import with_is_stale_null_as_zero

    seeded("default")
    at_backup, _ = split(with_is_stale_null_as_zero(table_state()), "default", 2)
    path = write_v2(backup_env / "comprehensive_backup_20250902_174646.json.gz", v2_document())
    damage_target("default")
    change_others("default")
    _, others_before = split(table_state(), "default", 2)
    result = services.backup_restore(file=str(path), tenants=[TARGET], safety_backup=False, allow_unsigned=True)
    assert result.format == "legacy v2.0"
    mine, others = split(table_state(), "default", 2)
    assert mine == at_backup and others == others_before
    sql("default", "INSERT INTO products_fts(products_fts) VALUES('integrity-check')")
