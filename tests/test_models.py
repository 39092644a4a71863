"""The admin's placeholder model has no table: Django's own commands, which walk every model, still work."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from adcp_backup.models import BackupFile

from .scheduling_fixtures import manage, project_env


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The demo project in a folder of its own: migrated and seeded, as `make demo` leaves it."""
    workdir = tmp_path_factory.mktemp("demo-project")
    env = project_env(workdir)
    for args in (("migrate", "--noinput", "-v0"), ("adcp_demo", "--tenants", "2", "--products", "5", "--agents", "1",
                                                     "--embeddings", "2", "--dim", "4")):
        done = manage(*args, env=env, cwd=workdir)
        assert done.returncode == 0, done.stderr
    return workdir, env


def run(project: tuple[Path, dict[str, str]], *args: str) -> str:
    workdir, env = project
    done = manage(*args, env=env, cwd=workdir)
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("args", [(), ("--all",), ("adcp_backup",), ("--all", "adcp_backup")],
                         ids=["project", "project-all", "app", "app-all"])
def test_dumpdata_serialises_everything_and_passes_over_the_placeholder(demo_project, args):
    objects = json.loads(run(demo_project, "dumpdata", *args))
    models = {o["model"] for o in objects}
    assert "adcp_backup.backupfile" not in models
    assert sum(1 for o in objects if o["model"] == "adcp_backup.tenant") == 2
    assert sum(1 for o in objects if o["model"] == "adcp_backup.product") == 5


@pytest.mark.slow
def test_dumpdata_of_the_placeholder_alone_is_empty(demo_project):
    assert json.loads(run(demo_project, "dumpdata", "adcp_backup.backupfile")) == []


@pytest.mark.slow
def test_flush_and_its_sql_leave_the_adcp_tables_and_the_placeholder_alone(demo_project):
    sql = run(demo_project, "sqlflush")
    assert "adcp_backup_backupjob" in sql
    assert "backupfile" not in sql and '"tenant"' not in sql and '"product"' not in sql
    run(demo_project, "flush", "--no-input")
    objects = json.loads(run(demo_project, "dumpdata", "adcp_backup"))
    assert sum(1 for o in objects if o["model"] == "adcp_backup.tenant") == 2  # unmanaged: not Django's to empty


@pytest.mark.slow
def test_inspectdb_and_check_deploy_run(demo_project):
    models = run(demo_project, "inspectdb")
    assert "db_table = 'tenant'" in models and "backupfile" not in models
    run(demo_project, "check", "--deploy", "--fail-level", "ERROR")


@pytest.mark.django_db
def test_the_placeholder_manager_never_queries_the_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert list(BackupFile.objects.all()) == []
        assert BackupFile.objects.count() == 0
        assert list(BackupFile._base_manager.all()) == []
