"""scope.py on its own: which rows belong to a tenant, the tenants a stream holds, and a tenant restore fed an event
stream built from a real database."""
from __future__ import annotations

from typing import Any

import pytest
from django.db import connections

from adcp_backup import dataset, restore, scope
from adcp_backup.db import get_engine
from adcp_backup.exceptions import BackupError, Conflict, TenantConflict, UnknownTenant

from .helpers import Seeded, engine_aliases, table_state
from .streams import database_stream

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def execute(alias: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params or [])
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []


def restore_tenants(slugs: list[str] | None, *, dry_run: bool = False, create_schema: bool = False,
                    safety: list[tuple[list[str] | None, tuple[str, ...]]] | None = None,
                    reader: Any = None) -> restore.Outcome:
    def safety_backup(present: list[str] | None, global_parts: tuple[str, ...]) -> str:
        assert safety is not None
        safety.append((present, global_parts))
        return "safety-backup-name"

    return scope.restore_tenants(engine=get_engine("default"), reader=reader or database_stream(), slugs=slugs,
                                 create_schema=create_schema, dry_run=dry_run, validate=True, settings_targets=False,
                                 safety_backup=safety_backup if safety is not None else None,
                                 progress=lambda event: None)


@pytest.mark.parametrize("alias", engine_aliases())
def test_membership_selects_the_rows_of_the_tenants_through_every_link(seeded: Seeded, alias: str) -> None:
    seeded(alias)
    engine = get_engine(alias)
    embeddings = dataset.table("product_embeddings")
    condition, params = scope.membership(engine, embeddings, [1, 3])
    chosen = execute(alias, f"SELECT id FROM product_embeddings WHERE {condition} ORDER BY id", params)
    joined = execute(alias, "SELECT e.id FROM product_embeddings e JOIN product p ON p.id = e.product_id "
                            "WHERE p.tenant_id IN (1, 3) ORDER BY e.id")
    assert chosen == joined and chosen
    everything = execute(alias, "SELECT id FROM product_embeddings ORDER BY id")
    assert chosen != everything
    tenants = scope.TenantScope((1, 3), ("publisher-1", "publisher-3"))
    assert tenants.where(engine, dataset.table("externalagent")) == ("", [])
    where, where_params = tenants.where(engine, dataset.table("tenant"))
    assert execute(alias, f"SELECT id FROM tenant {where} ORDER BY id", where_params) == [(1,), (3,)]


def test_file_tenants_lists_every_tenant_with_its_product_count(seeded: Seeded) -> None:
    seeded()
    expected = [{"id": i, "slug": slug, "name": name, "products": products} for i, slug, name, products in execute(
        "default", "SELECT t.id, t.slug, t.name, COUNT(p.id) FROM tenant t LEFT JOIN product p ON p.tenant_id = t.id "
                   "GROUP BY t.id, t.slug, t.name ORDER BY t.id")]
    assert len(expected) == 4 and sum(e["products"] for e in expected) == 60
    assert scope.file_tenants(database_stream(batch=7)) == expected


def test_parse_global_keeps_the_order_given_and_refuses_other_words() -> None:
    assert scope.parse_global(["settings, externalagent", "settings", ""]) == ("settings", "externalagent")
    with pytest.raises(BackupError) as refused:
        scope.parse_global(["product"])
    assert str(refused.value) == "--with-global takes externalagent, settings; 'product' is none of them."


def test_a_tenant_restore_replaces_that_tenants_rows_and_leaves_every_other_row(seeded: Seeded) -> None:
    seeded()
    before = table_state()
    reader = database_stream()
    slug = execute("default", "SELECT slug FROM tenant WHERE id = 2")[0][0]
    execute("default", "UPDATE product SET name = 'changed'")
    execute("default", "UPDATE externalagent SET name = 'changed'")
    changed = table_state()
    tenant_of = dict(execute("default", "SELECT id, tenant_id FROM product"))
    safety: list[tuple[list[str] | None, tuple[str, ...]]] = []

    outcome = restore_tenants([slug], safety=safety, reader=reader)

    assert outcome.tenants == (slug,)
    products = [old if tenant_of[old[0][0]] == 2 else new for old, new in zip(before["product"], changed["product"])]
    assert table_state() == {**changed, "product": products}
    assert safety == [([slug], ())]
    assert outcome.safety_backup == "safety-backup-name"
    assert outcome.notes == [f"tenants restored: {slug}"]  # the global table was never read into the spool


def test_a_slug_the_backup_lacks_is_refused_before_anything_is_written(seeded: Seeded) -> None:
    seeded()
    reader = database_stream()
    execute("default", "UPDATE product SET name = 'changed'")
    changed = table_state()
    with pytest.raises(UnknownTenant) as refused:
        restore_tenants(["publisher-1", "nobody"], reader=reader)
    assert str(refused.value) == "The backup holds no tenant with the slug 'nobody'."
    assert table_state() == changed


def test_a_slug_held_by_another_tenant_in_the_database_is_a_conflict(seeded: Seeded) -> None:
    seeded()
    reader = database_stream()
    slug = execute("default", "SELECT slug FROM tenant WHERE id = 2")[0][0]
    execute("default", "UPDATE tenant SET slug = 'renamed' WHERE id = 2")
    execute("default", "UPDATE tenant SET slug = %s WHERE id = 3", [slug])
    changed = table_state()
    with pytest.raises(TenantConflict) as refused:
        restore_tenants([slug], reader=reader)
    assert refused.value.conflicts == [
        Conflict("tenant", 2, f"its slug {slug!r} is used by tenant id 3 in the database"),
        Conflict("tenant", 2, f"the id is tenant 'renamed' in the database, not {slug!r}"),
    ]
    assert table_state() == changed


def test_a_full_backup_needs_the_tenants_named(seeded: Seeded) -> None:
    seeded()
    with pytest.raises(BackupError) as refused:
        restore_tenants(None)
    assert str(refused.value) == "Name the tenants to restore from a full backup."
    with pytest.raises(BackupError) as refused:
        restore_tenants(["publisher-1"], create_schema=True)
    assert str(refused.value) == ("--create-schema rebuilds a whole database; it cannot be combined with a tenant "
                                  "restore.")
