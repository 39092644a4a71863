"""Fixtures shared by every test module: isolated storage and settings files, the AdCP schema, the demo data.

Plain helpers live in helpers.py; the fixture modules of some groups of tests are registered here once."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from adcp_backup import demo

from .helpers import SMALL, Seeded, create_schema, drop_schema

pytest_plugins = [
    "tests.admin_fixtures",
    "tests.drill_fixtures",
    "tests.s3_fixtures",
    "tests.scheduling_fixtures",
]


@pytest.fixture
def operations_log() -> Callable[[], str]:
    """The text the operations log received during this test only: the file is shared by the whole test run."""
    path = Path(django_settings.LOG_FILE)
    start = path.stat().st_size if path.exists() else 0

    def written() -> str:  # the handler flushes every record it writes
        if not path.exists():
            return ""
        with path.open("rb") as f:
            f.seek(start)
            return f.read().decode("utf-8")

    return written


@pytest.fixture
def backup_env(tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory of its own, with its backup folder and settings files."""
    monkeypatch.chdir(tmp_path)
    settings.ADCP_BACKUP_DIR = str(tmp_path / "backups")
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(tmp_path / "data" / "app_settings.json"),
                                          str(tmp_path / "data" / "tenant_settings.json")]
    settings.ADCP_BACKUP_ENV_VARS = ["GEMINI_API_KEY", "EMBEDDINGS_PROVIDER", "SERVICE_BASE_URL", "DEBUG"]
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-secret-value")
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "gemini")
    monkeypatch.setenv("SERVICE_BASE_URL", "https://admin:hunter2@adcp.example.com/api")
    demo.write_settings_files(overwrite=True)
    return tmp_path


@pytest.fixture
def adcp_schema(transactional_db: None) -> Iterator[Callable[[str], None]]:
    """Call with an alias to give that database the AdCP schema; it is dropped after the test."""
    made: list[str] = []

    def make(alias: str = "default") -> None:
        create_schema(alias)
        made.append(alias)

    yield make
    for alias in made:
        drop_schema(alias)


@pytest.fixture
def seeded(adcp_schema: Callable[[str], None], backup_env: Path) -> Seeded:
    """Call with an alias (and a size) for a database holding the demo data."""

    def make(alias: str = "default", size: demo.DemoSize = SMALL) -> dict[str, int]:
        adcp_schema(alias)
        return demo.seed(database=alias, size=size)

    return make
