"""Legacy files restored into PostgreSQL and MariaDB hold what a native backup of the same data gives there."""
from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from adcp_backup import services

from .helpers import create_schema, engine_aliases, table_state
from .legacy_fixtures import (
    csv_document,
    seed_legacy_source,
    v1_full_document,
    v2_document,
    write_csv_backup,
    write_v1_full,
    write_v2,
)

pytestmark = [pytest.mark.engines, pytest.mark.django_db(transaction=True, databases="__all__")]
SERVER_ALIASES = [alias for alias in engine_aliases() if alias != "default"]
WRITERS = {
    "legacy v2.0": lambda folder: write_v2(folder / "comprehensive_backup_20250902_174646.json.gz", v2_document()),
    "legacy v1.0 full_backup": lambda folder: write_v1_full(folder / "full_backup_20250831_091502.json.gz",
                                                            v1_full_document()),
    "legacy v1.0 csv_backup": lambda folder: write_csv_backup(folder / "csv_backup_20250901_120000.json",
                                                              csv_document()),
}


@pytest.fixture
def legacy_source(seeded: Any) -> dict[str, list[tuple[Any, ...]]]:
    return seed_legacy_source(seeded)


def _vendor_module(alias: str) -> str:
    return {"postgresql": "adcp_backup.db.postgresql", "mysql": "adcp_backup.db.mysql"}[alias]


@pytest.mark.skipif(not SERVER_ALIASES, reason="ADCP_TEST_POSTGRES_URL and ADCP_TEST_MYSQL_URL are not set")
@pytest.mark.parametrize("alias", SERVER_ALIASES or ["postgresql"])
@pytest.mark.parametrize("fmt", list(WRITERS))
def test_legacy_file_restores_into_a_server_engine_like_a_native_backup(legacy_source, backup_env, alias, fmt):
    if importlib.util.find_spec(_vendor_module(alias)) is None:
        pytest.skip(f"the {alias} engine is not part of this tree")
    path = WRITERS[fmt](backup_env)
    # The reference: the same SQLite data through a native backup, restored into the same engine.
    native = services.backup_create(compression="none")
    create_schema(alias)
    services.backup_restore(file=native.name, database=alias, safety_backup=False, from_other_database=True)
    reference: dict[str, list[tuple[Any, ...]]] = table_state(alias)
    create_schema(alias)

    result = services.backup_restore(file=str(path), database=alias, safety_backup=False, allow_unsigned=True)

    assert result.format == fmt
    restored = table_state(alias)
    if fmt == "legacy v1.0 csv_backup":
        # Only product columns other than created_at come from the source; created_at is the file's time.
        assert [row[:8] for row in restored["product"]] == [row[:8] for row in reference["product"]]
        assert len({row[8] for row in restored["product"]}) == 1
        assert restored["product_embeddings"] == []
        assert [row[:3] for row in restored["tenant"]] == [row[:3] for row in reference["tenant"]]
        return
    # Both legacy formats wrote is_stale NULL as false.
    stale = [row[:9] + (0 if row[9] is None else row[9],) + row[10:] for row in reference["product_embeddings"]]
    assert restored == {**reference, "product_embeddings": stale}
