"""With the AdCP tables in another database, Django's own commands ask the router and find them only there."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "second"])

ROUTERS = ["adcp_backup.routers.AdcpTablesRouter"]


def dump(database: str) -> list[dict]:
    out = StringIO()
    call_command("dumpdata", database=database, stdout=out)
    return json.loads(out.getvalue())


def test_without_the_router_dumpdata_of_default_fails_on_tables_that_live_elsewhere(adcp_schema, settings):
    adcp_schema("second")
    settings.ADCP_BACKUP_DATABASES = ["second"]
    with pytest.raises(CommandError, match="no such table: tenant"):  # what the router is for
        dump("default")


def test_with_the_router_dumpdata_finds_the_adcp_tables_only_where_they_live(seeded, settings):
    seeded("second")
    settings.ADCP_BACKUP_DATABASES = ["second"]
    settings.DATABASE_ROUTERS = ROUTERS
    assert not [row for row in dump("default") if row["model"].startswith("adcp_backup.t")]
    tenants = [row for row in dump("second") if row["model"] == "adcp_backup.tenant"]
    assert len(tenants) == 4


def test_the_router_leaves_every_other_model_to_the_others():
    from adcp_backup.routers import AdcpTablesRouter

    router = AdcpTablesRouter()
    assert router.allow_migrate("default", "adcp_backup", model_name="backupjob") is None
    assert router.allow_migrate("default", "auth", model_name="user") is None
    assert router.allow_migrate("default", "adcp_backup", model_name="tenant") is True  # the default setting
