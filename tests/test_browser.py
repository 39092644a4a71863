"""The Backups page end to end in Debian's Chromium: log in, create, validate, restore, history, download."""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import Permission, User
from django.db import connections
from playwright.sync_api import Page, expect

from adcp_backup import demo, services
from adcp_backup.conf import backup_settings
from adcp_backup.models import BackupJob
from adcp_backup.storage import BackupStorage

from .admin_fixtures import PASSWORD
from .helpers import table_state
from .programs import require_program

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
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
    wanted = os.environ.get("ADCP_UPDATE_SCREENSHOTS", "")
    if wanted and (wanted == "1" or name in wanted.split(",")):  # 1: every image; else a list of names
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


# -- at production size ------------------------------------------------------------------------------------
# At least 200,000 products, as the product requirement says; ADCP_BROWSER_PRODUCTS changes it for a quick look.
PRODUCTS = int(os.environ.get("ADCP_BROWSER_PRODUCTS") or 200_000)
BIG = demo.DemoSize(tenants=200, products=PRODUCTS, agents=2, embeddings=2_000, dim=64)
DRY_RUN_TIMEOUT = 30 * 60_000  # the dry run's diff of 200,000 products may be slow until it is index-backed
MEASUREMENTS = Path(os.environ.get("ADCP_TEST_WORKDIR") or "/tmp") / "adcp-admin-measurements.json"


WIDE_ELEMENTS = """() => [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > 391 && !e.closest('.adcp-scroll'))
    .slice(0, 8)
    .map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"""


def log_in(page: Page, base: str, username: str, next_path: str = "/admin/adcp_backup/backupfile/") -> None:
    page.goto(f"{base}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


def timed_goto(page: Page, target: str) -> float:
    started = time.monotonic()
    response = page.goto(target)
    elapsed = time.monotonic() - started
    assert response is not None and response.status == 200, (target, response and response.status)
    return elapsed


def progress_values(page: Page, progress_url: str, *, until: float) -> list[tuple[Any, ...]]:
    """The distinct progress states the JSON endpoint reports while the job runs."""
    seen: list[tuple[Any, ...]] = []
    while time.monotonic() < until:
        data = page.request.get(progress_url).json()
        state = (data["phase"], data["table"], data["done"], data["message"])
        if data["finished"]:
            break
        if not seen or seen[-1] != state:
            seen.append(state)
        time.sleep(0.2)
    return seen


def server_env(workdir: Path, database: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADCP_", "DJANGO_", "CELERY_", "DATABASE_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "project.settings", "PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite:///{database}",
        "ADCP_BACKUP_DIR": str(workdir / "backups"), "ADCP_BACKUP_LOG_FILE": str(workdir / "server.log"),
        "ADCP_BACKUP_SETTINGS_FILES": ",".join(str(workdir / "data" / n)
                                               for n in ("app_settings.json", "tenant_settings.json")),
        "ADCP_BACKUP_JOB_RUNNER": "thread", "ADCP_BACKUP_LOG_LEVEL": "WARNING",
    })
    return env


def start_server(env: dict[str, str], cwd: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runserver", f"127.0.0.1:{port}", "--noreload",
                             "--skip-checks"], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return proc
        time.sleep(0.2)
    proc.kill()
    pytest.fail("the server did not start")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_at_production_size_the_site_stays_up_and_nothing_sticks(page: Page, browser: Any, live_server: Any,
                                                                 seeded: Any, thread_jobs: Any, backup_env: Path,
                                                                 settings: Any) -> None:
    counts = seeded(size=BIG)
    assert counts["product"] == PRODUCTS
    User.objects.create_superuser("operator", "operator@example.com", PASSWORD)
    viewer = User.objects.create_user("viewer", "viewer@example.com", PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_backups"))
    made = services.backup_create(compression="gzip")
    corrupt = backup_env / "backups" / "damaged.jsonl.gz"
    lines = gzip.decompress(Path(made.path).read_bytes()).split(b"\n")
    lines[5] = lines[5].replace(b'"', b'"X', 1)
    corrupt.write_bytes(gzip.compress(b"\n".join(lines)))
    assert not services.backup_validate(file=corrupt.name).valid
    base = live_server.url
    listing = f"{base}/admin/adcp_backup/backupfile/"
    page.set_default_timeout(TIMEOUT)
    log_in(page, base, "operator")
    expect(page.locator(f'tr[data-name="{made.name}"]')).to_contain_text(f"{PRODUCTS:,}")
    expect(page.locator(f'tr[data-name="{made.name}"]')).to_contain_text("MiB")
    screenshot(page, "backups-list.png", backup_env)

    # The restore page of the damaged file offers no restore, and says why.
    page.goto(f"{listing}file/{corrupt.name}/restore/")
    expect(page.locator("#restore-refused")).to_contain_text("see the report")
    expect(page.locator("#restore-form")).to_have_count(0)

    # The restore plan: 200 tenants in a list that scrolls inside the form.
    page.goto(f"{listing}file/{made.name}/restore/")
    expect(page.locator("#restore-plan")).to_contain_text(f"{PRODUCTS:,}")
    tenants = page.locator("#tenant-scope .tenant-choices > div")
    assert tenants.evaluate("e => e.scrollHeight > e.clientHeight + 100")
    screenshot(page, "restore-confirmation.png", backup_env)

    # A real restore from the admin; another tab loads the list and the job page and sees progress advance.
    page.uncheck("#id_dry_run")
    page.fill("#id_confirm_name", made.name)
    page.get_by_role("button", name="Restore").click()
    expect(page.locator("#job-status")).to_be_visible()
    job = BackupJob.objects.filter(kind="restore").latest("id")
    other = page.context.new_page()
    other.set_default_timeout(TIMEOUT)
    timings = {"list": [], "job page": []}
    states: list[tuple[Any, ...]] = []
    progress_url = f"{listing}jobs/{job.pk}/progress/"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and BackupJob.objects.get(pk=job.pk).status in ("pending", "running"):
        timings["list"].append(timed_goto(other, listing))
        timings["job page"].append(timed_goto(other, f"{listing}jobs/{job.pk}/"))
        if len(timings["list"]) == 1:
            screenshot(other, "job-progress.png", backup_env)
        states += progress_values(other, progress_url, until=time.monotonic() + 2)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert len(timings["list"]) >= 1, "the restore ended before another tab could load a page"
    assert len({s for s in states}) >= 2, states  # progress advanced while the restore ran
    MEASUREMENTS.write_text(json.dumps({"products": counts["product"], "seconds": timings,
                                        "restore_seconds": job.duration.total_seconds() if job.duration else None,
                                        "progress_states": len(set(states))}, indent=2))
    print(f"\nPage loads during the restore (s): {timings}")  # the product requirement is under one second
    # No page waited for the restore's lock (SQLite's 5 s timeout would have answered 500, not 200).
    assert max(timings["list"] + timings["job page"]) < 5, timings
    expect(page.locator("#restore-outcome")).to_contain_text("The data was replaced.", timeout=TIMEOUT)
    page.goto(listing)
    page.locator("#history").scroll_into_view_if_needed()
    screenshot(page, "job-history.png", backup_env)

    # At phone width the page keeps the screen's width: the table scrolls in its box.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, storage_state=page.context.storage_state())
    small = phone.new_page()
    small.goto(listing)
    assert small.evaluate("document.documentElement.scrollWidth") <= 390, small.evaluate(WIDE_ELEMENTS)
    assert small.locator("#backups").evaluate("e => e.scrollWidth > e.clientWidth")
    screenshot(small, "phone-list.png", backup_env)
    small.goto(f"{listing}file/{made.name}/restore/")
    small.uncheck("#id_dry_run")
    small.get_by_role("button", name="Restore").click()
    expect(small.locator(".errorlist")).to_contain_text("Type the backup")
    expect(small.locator("#tenant-scope")).to_be_visible()  # the form keeps its sections after an error
    assert small.evaluate("document.documentElement.scrollWidth") <= 390, small.evaluate(WIDE_ELEMENTS)
    phone.close()

    # A view-only user sees no buttons and gets 403 on every action URL.
    reader_context = browser.new_context()
    reader = reader_context.new_page()
    log_in(reader, base, "viewer")
    expect(reader.locator(f'tr[data-name="{made.name}"]')).to_be_visible()
    for label in ("Validate", "Restore", "Download", "Delete", "Create backup now", "Upload a backup", "Prune"):
        expect(reader.get_by_role("button", name=label)).to_have_count(0)
        expect(reader.get_by_role("link", name=label, exact=True)).to_have_count(0)
    token = next(c["value"] for c in reader_context.cookies() if c["name"] == "csrftoken")
    headers = {"X-CSRFToken": token, "Referer": listing}
    for method, path in (("post", "create/"), ("post", f"file/{made.name}/validate/"),
                         ("get", f"file/{made.name}/restore/"), ("post", f"file/{made.name}/restore/"),
                         ("get", f"file/{made.name}/download/"), ("get", f"file/{made.name}/delete/"),
                         ("post", f"file/{made.name}/delete/"), ("get", "upload/"), ("post", "upload/"),
                         ("get", "prune/"), ("post", "prune/"), ("post", f"jobs/{job.pk}/fail/")):
        response = getattr(reader.request, method)(f"{listing}{path}", headers=headers)
        assert response.status == 403, (method, path, response.status)
    reader.request.post(listing, headers=headers, form={"action": "delete_selected", "_selected_action": made.name,
                                                        "post": "yes"})
    assert made.name in BackupStorage().names()
    reader_context.close()

    # A server restarted mid-restore: the job is marked failed and frees the way within the stale window.
    # The project's settings hash passwords with PBKDF2 (the tests' with MD5): a user of its own for that server.
    hasher = PBKDF2PasswordHasher()
    User.objects.create(username="night-shift", is_staff=True, is_superuser=True,
                        password=hasher.encode(PASSWORD, hasher.salt()))
    database = connections["default"].settings_dict["NAME"]
    env = server_env(backup_env, database)
    port = free_port()
    server = start_server(env, backup_env, port)
    remote = f"http://127.0.0.1:{port}"
    try:
        restart = browser.new_context().new_page()
        restart.set_default_timeout(TIMEOUT)
        log_in(restart, remote, "night-shift", f"/admin/adcp_backup/backupfile/file/{made.name}/restore/")
        restart.uncheck("#id_dry_run")
        restart.fill("#id_confirm_name", made.name)
        restart.get_by_role("button", name="Restore").click()
        expect(restart.locator("#job-status")).to_be_visible()
        cut = BackupJob.objects.filter(kind="restore").latest("id")
        deadline = time.monotonic() + 60
        while cut.status != "running" and time.monotonic() < deadline:
            time.sleep(0.2)
            cut.refresh_from_db()
        assert cut.status == "running" and cut.runner.startswith(f"{server.pid}@"), (cut.status, cut.runner)
        server.send_signal(signal.SIGKILL)
        server.wait(30)
        killed_at = time.monotonic()
        server = start_server(env, backup_env, port)
        restart.goto(f"{remote}/admin/adcp_backup/backupfile/")
        restart.goto(f"{remote}/admin/adcp_backup/backupfile/jobs/{cut.pk}/")
        expect(restart.locator("#job-status")).to_have_text("Failed")
        expect(restart.locator("#job-error")).to_contain_text("server restarted")
        assert time.monotonic() - killed_at < float(backup_settings.JOB_STALE_AFTER)
        restart.goto(f"{remote}/admin/adcp_backup/backupfile/file/{made.name}/restore/")
        restart.uncheck("#id_dry_run")
        restart.fill("#id_confirm_name", made.name)
        restart.get_by_role("button", name="Restore").click()  # nothing blocks it any more
        expect(restart.locator("#job-status")).to_be_visible()
        assert BackupJob.objects.filter(kind="restore").latest("id").pk != cut.pk
        expect(restart.locator("#restore-outcome")).to_contain_text("The data was replaced.", timeout=TIMEOUT * 5)
    finally:
        server.kill()
        server.wait(30)
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM product")
        assert cursor.fetchone()[0] == counts["product"]

    # Last, as it is the slowest part: the dry run finishes and says what it is.
    page.goto(f"{listing}file/{made.name}/restore/")
    page.get_by_role("button", name="Restore").click()
    expect(page.locator("#restore-outcome")).to_contain_text("Dry run", timeout=DRY_RUN_TIMEOUT)
    expect(page.locator("#job-counts caption")).to_contain_text("would write (dry run)")
    screenshot(page, "restore-dry-run.png", backup_env)
    page.goto(listing)
    expect(page.locator("#history")).to_contain_text("Restore (dry run)")
