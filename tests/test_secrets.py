"""Secrets stay masked in every output: a table of secret shapes, each compared as a whole redacted value."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils.html import escape

from adcp_backup import notifications, services, settings_files, signals
from adcp_backup.exceptions import BackupError
from adcp_backup.settings_files import REDACTED as R

from .admin_fixtures import finish
from .helpers import table_state

# name, value as set, value as every output must show it. Every secret holds a marker "SeCrEt<n>".
SHAPES = [
    # credentials in URLs, whatever characters the password holds; IPv6 hosts and ports kept
    ("DATABASE_URL", "postgres://app:SeCrEt01@db.example.com:5432/adcp", f"postgres://app:{R}@db.example.com:5432/adcp"),
    ("REDIS_URL", "redis://:SeCrEt02/x#y?z@cache.example.com:6379/0", f"redis://:{R}@cache.example.com:6379/0"),
    ("BROKER_URL", "amqp://user:SeCrEt03@p@[2001:db8::1]:5672/vhost", f"amqp://user:{R}@[2001:db8::1]:5672/vhost"),
    ("MIRROR_URL", "https://ghp_SeCrEt04@github.com/org/repo.git", f"https://{R}@github.com/org/repo.git"),
    ("SERVICE_BASE_URL", "https://adcp.example.com/api?api_key=SeCrEt05&region=eu",
     f"https://adcp.example.com/api?api_key={R}&region={R}"),
    ("WEBHOOK_URL", "https://u:SeCrEt06?x@hooks.example.com/in?sig=SeCrEt07#top",
     f"https://u:{R}@hooks.example.com/in?sig={R}#top"),
    # libpq key/value connection strings
    ("PG_CONNINFO", "host=db.internal port=5432 user=app password=SeCrEt08 dbname=adcp",
     f"host=db.internal port=5432 user=app password={R} dbname=adcp"),
    ("PG_SERVICE_OPTIONS", "host=db password='SeCrEt09 with space' sslmode=require",
     f"host=db password={R} sslmode=require"),
    # secret names, whatever their value looks like
    ("GEMINI_API_KEY", "AIzaSeCrEt10", R),
    ("APP_SECRET", "SeCrEt11", R),
    ("GITHUB_TOKEN", "SeCrEt12", R),
    ("SMTP_PASS", "SeCrEt13", R),
    ("MAIL_PWD", "SeCrEt14", R),
    ("DB_PASSWORD", "SeCrEt15", R),
    ("GPG_PASSPHRASE", "SeCrEt16", R),
    ("GCP_CREDENTIALS", '{"private_key": "SeCrEt17"}', R),
    ("SENTRY_DSN", "https://SeCrEt18@o1.ingest.sentry.io/42", R),
    # what holds no secret stays exactly as it is
    ("EMBEDDINGS_PROVIDER", "gemini", "gemini"),
    ("PUBLIC_URL", "http://[::1]:8080/path/with@sign", "http://[::1]:8080/path/with@sign"),
    ("ADMIN_URL", "https://admin:1234/SeCrEt19@adcp.example.com/api", f"https://admin:{R}@adcp.example.com/api"),
    ("STATUS_URL", "https://status.example.com:8443/u/@ops/feed", "https://status.example.com:8443/u/@ops/feed"),
    ("ORIGIN_URL", "https://cdn.example.com:8443/assets/", "https://cdn.example.com:8443/assets/"),
    ("CACHE_HOSTS", "10.0.0.1:11211 10.0.0.2:11211", "10.0.0.1:11211 10.0.0.2:11211"),
]
EXPECTED = {name: shown for name, _value, shown in SHAPES}
MARKERS = [f"SeCrEt{n:02d}" for n in range(1, 20)]


def assert_no_secret(text: str) -> None:
    leaked = [m for m in MARKERS if m in text]
    assert not leaked, f"secrets in the output: {leaked}"


@pytest.mark.parametrize(("name", "value", "shown"), SHAPES, ids=[s[0] for s in SHAPES])
def test_each_shape_is_redacted_as_a_whole(name, value, shown):
    assert settings_files.redact_value(name, value) == shown


@pytest.fixture
def secret_env(backup_env, settings, monkeypatch):
    settings.ADCP_BACKUP_ENV_VARS = [name for name, _v, _s in SHAPES]
    for name, value, _shown in SHAPES:
        monkeypatch.setenv(name, value)
    return backup_env


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue() + str(exc)
    return 0, out.getvalue(), err.getvalue()


def test_every_output_shows_the_redacted_values_and_no_secret(seeded, secret_env, operations_log):
    seeded()
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    signals.restore_finished.connect(receiver)
    try:
        code, out, err = run("backup_create", "--compression", "none", "--json")
        assert code == 0, err
        assert_no_secret(out + err)
        created = json.loads(out)
        # the file
        data = Path(created["path"]).read_text()
        assert_no_secret(data)
        environment = next(orjson.loads(line) for line in data.split("\n") if '"kind":"environment"' in line)
        assert environment["variables"] == EXPECTED
        # --json and text of a restore (dry run), validate and list
        code, out, err = run("backup_restore", created["name"], "--dry-run", "--json")
        assert code == 0, err
        assert_no_secret(out + err)
        assert json.loads(out)["environment"]["variables"] == EXPECTED
        code, out, err = run("backup_restore", created["name"], "--dry-run")
        assert_no_secret(out + err)
        for name, shown in EXPECTED.items():
            assert f"    {name}={shown}\n" in out
        for command in (("backup_validate", created["name"]), ("backup_list",), ("backup_info",)):
            for extra in ((), ("--json",)):
                _code, out, err = run(*command, *extra)
                assert_no_secret(out + err)
        # signals
        assert received and received[-1]["result"].environment["variables"] == EXPECTED
    finally:
        signals.restore_finished.disconnect(receiver)
    # the operations log: this test's lines (another test logs these values on purpose)
    logged = operations_log()
    assert f"Backup {created['name']} written" in logged
    assert_no_secret(logged)


def test_an_encrypted_backup_with_secrets_included_still_masks_them_in_every_output(seeded, secret_env, settings):
    pyrage = pytest.importorskip("pyrage")
    identity = pyrage.x25519.Identity.generate()
    key_file = secret_env / "age.key"
    key_file.write_text(str(identity) + "\n")
    key_file.chmod(0o600)
    settings.ADCP_BACKUP_AGE_RECIPIENTS = [str(identity.to_public())]
    settings.ADCP_BACKUP_AGE_IDENTITY = str(key_file)
    seeded()
    made = services.backup_create(encrypt=True, include_secrets=True)
    code, out, err = run("backup_restore", made.name, "--dry-run", "--json")
    assert code == 0, err
    assert_no_secret(out + err)
    assert json.loads(out)["environment"]["variables"] == EXPECTED


def test_the_log_masks_secret_shapes_in_any_message(secret_env, operations_log):
    import logging

    logger = logging.getLogger("adcp_backup.services")
    for _name, value, _shown in SHAPES:
        logger.warning("Could not reach %s", value)
    logged = [line.split(": ", 1)[1] for line in operations_log().splitlines()]
    # A log message has no variable name: what a value's shape shows is masked (the DSN's token too), a plain
    # value of a secret name cannot be told apart from any other text.
    by_shape = {"SENTRY_DSN": f"https://{R}@o1.ingest.sentry.io/42"}
    assert logged == [f"Could not reach {by_shape.get(name, value if shown == R else shown)}"
                      for name, value, shown in SHAPES]


def test_the_admin_job_page_shows_only_redacted_values(admin_client, admin_db, secret_env):
    from django.urls import reverse

    made = services.backup_create(compression="gzip")
    response = admin_client.post(reverse("admin:adcp_backup_backupfile_restore", args=[made.name]), {"dry_run": "on"})
    job_id = int(response["Location"].rstrip("/").split("/")[-1])
    job = finish(job_id)
    assert job.status == "succeeded", job.error
    assert job.result["environment"]["variables"] == EXPECTED  # what the job pages render
    for page_url in (response["Location"], reverse("admin:adcp_backup_backupjob_change", args=[job.pk]),
                     reverse("admin:adcp_backup_backupjob_changelist")):
        page = admin_client.get(page_url)
        assert page.status_code == 200
        assert_no_secret(page.content.decode())
    record = admin_client.get(reverse("admin:adcp_backup_backupjob_change", args=[job.pk])).content.decode()
    assert escape("postgres://app:**redacted**@db.example.com:5432/adcp") in record


def test_the_failure_e_mail_masks_credentials_quoted_by_the_error(settings):
    settings.ADCP_BACKUP_NOTIFY_ADMINS = True
    settings.ADMINS = [("Ops", "ops@example.com")]
    error = BackupError("Cannot reach postgres://app:SeCrEt01@db.example.com:5432/adcp; host=db password=SeCrEt08")
    notifications.mail_admins_on_scheduled_failure(None, arguments={"purpose": "scheduled"}, exception=error)
    [message] = mail.outbox
    assert_no_secret(message.subject + message.body)
    assert f"postgres://app:{R}@db.example.com:5432/adcp; host=db password={R}\n" in message.body


# -- settings files that hold secrets ------------------------------------------------------------------
def write_secret_settings(backup_env: Path) -> bytes:
    content = json.dumps({"gemini_api_key": "SeCrEt10", "theme": "dark", "nested": {"smtpPassword": "SeCrEt15"}},
                         indent=2).encode()
    (backup_env / "data" / "app_settings.json").write_bytes(content)
    return content


def test_a_settings_file_with_secrets_is_withheld_from_a_clear_backup_and_the_header_says_so(seeded, backup_env):
    seeded()
    content = write_secret_settings(backup_env)
    tenant_file = (backup_env / "data" / "tenant_settings.json").read_bytes()
    code, out, err = run("backup_create", "--compression", "none", "--json")
    created = json.loads(out)
    data = Path(created["path"]).read_text()
    assert_no_secret(data)
    lines = [orjson.loads(line) for line in data.split("\n") if line]
    header = lines[0]
    assert header["secrets"] == "redacted" and header["withheld_files"] == ["data/app_settings.json"]
    files = {r["path"]: r for r in lines if isinstance(r, dict) and r.get("kind") == "file"}
    assert "content_b64" not in files["data/app_settings.json"]
    assert "gemini_api_key" in files["data/app_settings.json"]["withheld"]
    assert files["data/tenant_settings.json"]["size"] == len(tenant_file)  # the other file is kept byte for byte
    assert created["withheld_files"] == ["data/app_settings.json"]
    code, out, _ = run("backup_create", "--compression", "none")
    assert "settings file data/app_settings.json: withheld" in out

    # A restore of that backup leaves the file on disk alone, whatever it now holds.
    changed = content.replace(b"dark", b"light")
    (backup_env / "data" / "app_settings.json").write_bytes(changed)
    restored = services.backup_restore(file=created["name"], safety_backup=False)
    assert (backup_env / "data" / "app_settings.json").read_bytes() == changed
    [action] = [f["action"] for f in restored.files if f["path"].endswith("app_settings.json")]
    assert action.startswith("left alone: withheld")
    report = services.backup_validate(file=created["name"])
    assert report.valid and report.withheld_files == ["data/app_settings.json"]


def test_an_encrypted_backup_keeps_the_settings_file_byte_for_byte(seeded, backup_env, settings):
    pyrage = pytest.importorskip("pyrage")
    identity = pyrage.x25519.Identity.generate()
    key_file = backup_env / "age.key"
    key_file.write_text(str(identity) + "\n")
    settings.ADCP_BACKUP_AGE_RECIPIENTS = [str(identity.to_public())]
    settings.ADCP_BACKUP_AGE_IDENTITY = str(key_file)
    seeded()
    content = write_secret_settings(backup_env)
    made = services.backup_create(encrypt=True)
    assert made.withheld_files == []
    (backup_env / "data" / "app_settings.json").write_bytes(b"{}")
    state = table_state()
    services.backup_restore(file=made.name, safety_backup=False)
    assert (backup_env / "data" / "app_settings.json").read_bytes() == content
    assert table_state() == state


@pytest.mark.parametrize(("key", "secret"), [
    ("gemini_api_key", True), ("apiKey", True), ("smtpPassword", True), ("db.pass", True), ("client_secret", True),
    ("auth-token", True), ("sentry_dsn", True), ("keywords", False), ("monkey_count", False), ("passage", False),
    ("theme", False), ("key_bindings", False),
])
def test_secret_looking_keys(key, secret):
    assert settings_files.is_secret_key(key) is secret
