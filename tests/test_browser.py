"""The Backups page end to end in Debian's Chromium: log in, create, validate, restore, history, download."""
# ruff: noqa: F811  (pytest fixtures are imported by name and requested as arguments)
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections
from playwright.sync_api import Page, expect

from adcp_backup.models import BackupJob
from adcp_backup.storage import BackupStorage

from .admin_fixtures import PASSWORD, admin_db, thread_jobs  # noqa: F401 (fixtures)
from .conftest import table_state
from .programs import require_program

pytestmark = pytest.mark.browser

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
TIMEOUT = 60_000


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {
        **browser_type_launch_args,
        "executable_path": require_program("chromium", "chromium-browser"),
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"],
    }


@pytest.fixture
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "viewport": {"width": 1400, "height": 900}, "accept_downloads": True}


def screenshot(page: Page, name: str, folder: Path) -> None:
    """Into the test's folder; into docs/images as well when ADCP_UPDATE_SCREENSHOTS is set, so that an
    ordinary test run leaves the committed images alone."""
    image = page.screenshot(path=str(folder / name), full_page=True)
    assert image.startswith(b"\x89PNG")
    if os.environ.get("ADCP_UPDATE_SCREENSHOTS"):
        IMAGES.mkdir(parents=True, exist_ok=True)
        (IMAGES / name).write_bytes(image)


def test_operator_creates_validates_restores_and_downloads_a_backup(page: Page, live_server: Any,
                                                                    admin_db: dict[str, int],
                                                                    backup_env: Path) -> None:
    User.objects.create_superuser("operator", "operator@example.com", PASSWORD)
    page.set_default_timeout(TIMEOUT)

    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.get_by_role("link", name="Backups", exact=True).click()
    expect(page.locator("h1")).to_have_text("Backups")
    expect(page.locator("#backup-list")).to_contain_text("No backups yet.")

    # Create: the job page follows the job until it ends.
    page.select_option("#id_compression", "gzip")
    page.get_by_role("button", name="Create backup now").click()
    expect(page.locator("#create-outcome")).to_contain_text("written", timeout=TIMEOUT)
    job = BackupJob.objects.get(kind="create")
    assert job.status == "succeeded", job.error
    name = job.backup_name
    assert BackupStorage().names() == [name]

    page.get_by_role("link", name="Back to the backups").click()
    row = page.locator(f'tr[data-name="{name}"]')
    expect(row).to_contain_text("adcp-backup v3")
    expect(row).to_contain_text("product 60")

    # Validate: the report with counts and checksums.
    row.get_by_role("button", name="Validate").click()
    expect(page.locator("#validation-verdict")).to_have_text("Valid", timeout=TIMEOUT)
    for table, rows in admin_db.items():
        expect(page.locator("#job-counts")).to_contain_text(table)
        expect(page.locator("#job-counts")).to_contain_text(str(rows))
    screenshot(page, "validation-report.png", backup_env)

    # Restore, after the data has changed: confirmation with dry run ticked, then a real restore.
    original = table_state()
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE product SET name = 'changed after the backup' WHERE id <= 5")
        cursor.execute("DELETE FROM product_embeddings WHERE id > 3")
    assert table_state() != original
    page.get_by_role("link", name="Back to the backups").click()
    page.locator(f'tr[data-name="{name}"]').get_by_role("link", name="Restore").click()
    expect(page.locator("#restore-plan")).to_contain_text("product_embeddings")
    expect(page.locator("#id_dry_run")).to_be_checked()
    screenshot(page, "restore-confirmation.png", backup_env)
    page.uncheck("#id_dry_run")
    page.get_by_role("button", name="Restore").click()
    expect(page.locator(".errorlist")).to_contain_text("Type the backup")
    assert not BackupJob.objects.filter(kind="restore").exists()
    page.uncheck("#id_dry_run")
    page.fill("#id_confirm_name", name)
    page.get_by_role("button", name="Restore").click()
    expect(page.locator("#restore-outcome")).to_contain_text("The data was replaced.", timeout=TIMEOUT)
    assert table_state() == original

    # History: on the page and in the read-only job list.
    page.get_by_role("link", name="Back to the backups").click()
    history = page.locator("#history")
    for kind in ("Create", "Validate", "Restore"):
        expect(history).to_contain_text(kind)
    expect(history).not_to_contain_text("Failed")
    expect(page.locator(f'tr[data-name="{name}"] .adcp-validation')).to_contain_text("valid")
    screenshot(page, "backups-list.png", backup_env)
    page.get_by_role("link", name="Full history").click()
    expect(page.locator("#result_list")).to_contain_text(name)
    page.go_back()

    # Download: the exact bytes of the file in storage.
    with page.expect_download() as download_info:
        page.locator(f'tr[data-name="{name}"]').get_by_role("link", name="Download").click()
    download = download_info.value
    assert download.suggested_filename == name
    assert Path(download.path()).read_bytes() == (backup_env / "backups" / name).read_bytes()


def test_running_job_shows_live_progress_and_the_page_reloads_when_it_ends(page: Page, live_server: Any,
                                                                           admin_db: dict[str, int],
                                                                           backup_env: Path) -> None:
    User.objects.create_superuser("operator", "operator@example.com", PASSWORD)
    running = BackupJob.objects.create(kind="create", status="running", options={"compression": "gzip"})
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/adcp_backup/backupfile/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#running-jobs")).to_contain_text(f"Create {running.pk}")
    expect(page.locator("#running-jobs .adcp-progress-text")).to_have_text(re.compile("^Running"))
    BackupJob.objects.filter(pk=running.pk).update(status="failed", error="stopped by the test")
    expect(page.locator("#running-jobs")).to_have_count(0, timeout=TIMEOUT)
    expect(page.locator("#history")).to_contain_text("stopped by the test")
