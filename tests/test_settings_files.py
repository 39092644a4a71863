"""Settings files and environment capture, rule by rule: redaction, secret keys, modes, targets, atomic writes.

Each example compares the whole value a function returns, so that a change anywhere in it fails a test.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from adcp_backup import services, settings_files
from adcp_backup.exceptions import BackupError, InvalidBackup, Problem, RestoreError, SettingsFilesNotWritten
from adcp_backup.format.events import FileRecord
from adcp_backup.settings_files import REDACTED as R
from adcp_backup.settings_files import (
    CapturedFile,
    RecordChecker,
    applied_mode,
    capture_environment,
    capture_files,
    check_records,
    feature_flags,
    is_secret_key,
    is_secret_name,
    mask_variables,
    redact_url,
    redact_value,
    secret_keys,
    target_for,
    unwritable_targets,
    write_atomically,
    write_records,
)

# ---------------------------------------------------------------------------------------------------------------
# Redaction: value as set -> value as every output shows it.
REDACTIONS = [
    # user:password@ -- the user name stays, the password goes, host and port and path stay
    ("postgres://app:pw@db.example.com:5432/adcp", f"postgres://app:{R}@db.example.com:5432/adcp"),
    ("https://u:p@h.example.com:5432", f"https://u:{R}@h.example.com:5432"),
    # a userinfo without a colon is a token: all of it goes
    ("https://ghp_token@github.com/org/repo.git", f"https://{R}@github.com/org/repo.git"),
    ("https://tok@[::1]/x", f"https://{R}@[::1]/x"),
    # an empty user name keeps its colon
    ("redis://:pw@cache:6379/0", f"redis://:{R}@cache:6379/0"),
    # IPv6 hosts, with and without a port, and an empty port
    ("amqp://user:pw@[2001:db8::1]:5672/vhost", f"amqp://user:{R}@[2001:db8::1]:5672/vhost"),
    ("amqp://user:pw@[fe80::1%25eth0]/vhost", f"amqp://user:{R}@[fe80::1%25eth0]/vhost"),
    ("https://u:p@h:/x", f"https://u:{R}@h:/x"),
    # the password may hold / # ? @ : the userinfo runs to the last @ followed by a host
    ("redis://:a/b#c?d@e@cache.example.com:6379/0", f"redis://:{R}@cache.example.com:6379/0"),
    ("redis://user:pa/ss@h:6379/0", f"redis://user:{R}@h:6379/0"),
    ("redis://user:pa:ss@h:6379/0", f"redis://user:{R}@h:6379/0"),  # the user name ends at the first colon
    ("https://admin:1234/xyz@adcp.example.com/api", f"https://admin:{R}@adcp.example.com/api"),
    ("http://user:pa]ss@host/", f"http://user:{R}@host/"),
    # a later @ that no host follows belongs to the path
    ("https://u:p@h.example.com/a@b:c", f"https://u:{R}@h.example.com/a@b:c"),
    # URLs urlsplit rejects (an unclosed IPv6 bracket, a port that is not a number): credentials masked all the same
    ("https://u:p@[::1/x", f"https://u:{R}@[::1/x"),
    ("redis://:pw@host:port/0", f"redis://:{R}@host:port/0"),
    # an @ in the path is not credentials: a dotted host, localhost or an address before the first /
    ("https://h.example.com/a@b", "https://h.example.com/a@b"),
    ("http://localhost:8080/x@y", "http://localhost:8080/x@y"),
    ("http://LocalHost:8080/x@y", "http://LocalHost:8080/x@y"),
    ("http://[::1]:80/x@y", "http://[::1]:80/x@y"),
    ("https://status.example.com:8443/u/@ops/feed", "https://status.example.com:8443/u/@ops/feed"),
    # query-string values, every one (their names prove nothing); an empty value stays empty; the fragment stays
    ("https://h/?a=1&b=&c;d=2#f=3", f"https://h/?a={R}&b=&c;d={R}#f=3"),
    # the query starts at the first ?, wherever it stands after the scheme
    ("https://h/?a=1?b=2", f"https://h/?a={R}"),
    ("https://h?a=1", f"https://h?a={R}"),
    ("https://?token=abc", f"https://?token={R}"),
    ("https://u:p?x=1@h/in?k=v#top", f"https://u:{R}@h/in?k={R}#top"),
    ("x://u:p@h#frag?x=1", f"x://u:{R}@h#frag?x={R}"),
    # several URLs in one value, each on its own
    ("a://u:p@h b://v:q@i", f"a://u:{R}@h b://v:{R}@i"),
    # libpq key/value strings (DSNs): quoted values with escapes, any case, ; ends a value
    ("host=db port=5432 user=app password=pw dbname=adcp", f"host=db port=5432 user=app password={R} dbname=adcp"),
    ("host=db password='a b' sslmode=require", f"host=db password={R} sslmode=require"),
    ("dsn password=x PWD = y sslpassword=z;passwd='a \\' b' x",
     f"dsn password={R} PWD = {R} sslpassword={R};passwd={R} x"),
    ("mypassword=x", "mypassword=x"),
    # what holds no secret shape stays exactly as it is
    ("no secret here", "no secret here"),
    ("10.0.0.1:11211 10.0.0.2:11211", "10.0.0.1:11211 10.0.0.2:11211"),
    ("https://cdn.example.com:8443/assets/", "https://cdn.example.com:8443/assets/"),
    ("a=b", "a=b"),
    ("", ""),
]


# Plain ids: mutmut passes test ids on pytest's command line, where "::" and brackets in a URL would split them.
@pytest.mark.parametrize(("value", "shown"), REDACTIONS, ids=[f"shape{n:02d}" for n in range(len(REDACTIONS))])
def test_redact_url_masks_each_secret_shape_and_keeps_everything_around_it(value, shown):
    assert redact_url(value) == shown


def test_a_variable_named_as_a_secret_is_masked_whole_whatever_its_value():
    assert redact_value("DB_PASSWORD", "plain") == R
    assert redact_value("db_password", "plain") == R  # the name's case does not matter
    assert redact_value("DB_PASSWORD", "") == ""  # nothing to hide: an empty value shows as empty
    assert redact_value("DB_PASSWORD", None) is None
    assert redact_value("PUBLIC_URL", "https://u:p@h/") == f"https://u:{R}@h/"
    assert redact_value("PUBLIC_URL", None) is None


def test_the_secret_patterns_setting_decides_which_names_are_secrets(settings):
    settings.ADCP_BACKUP_SECRET_PATTERNS = ["hush"]
    assert [is_secret_name(n) for n in ("MY_HUSH_VALUE", "my_hush", "DB_PASSWORD")] == [True, True, False]


def test_mask_variables_masks_strings_and_leaves_other_values():
    variables = {"API_TOKEN": "t", "URL": "https://u:p@h/", "UNSET": None, "COUNT": 3}
    assert mask_variables(variables) == {"API_TOKEN": R, "URL": f"https://u:{R}@h/", "UNSET": None, "COUNT": 3}


def test_capture_environment_records_the_set_variables_and_names_those_it_redacted():
    environ = {"API_TOKEN": "t", "URL": "https://u:p@h/", "PLAIN": "x", "EMPTY_TOKEN": "", "OTHER": "o",
               "DEBUG": "yes"}
    names = ["API_TOKEN", "MISSING", "URL", "PLAIN", "EMPTY_TOKEN"]
    assert capture_environment(names=names, environ=environ) == {
        "variables": {"API_TOKEN": R, "URL": f"https://u:{R}@h/", "PLAIN": "x", "EMPTY_TOKEN": ""},
        "redacted": ["API_TOKEN", "URL"],
        "feature_flags": {"web_context_enabled": False, "debug_mode": True, "skip_reference_validation": False},
    }
    assert capture_environment(names=names, environ=environ, include_secrets=True)["variables"] == {
        "API_TOKEN": "t", "URL": "https://u:p@h/", "PLAIN": "x", "EMPTY_TOKEN": ""}
    assert capture_environment(names=names, environ=environ, include_secrets=True)["redacted"] == []


def test_capture_environment_reads_the_configured_names_from_the_process_environment(settings, monkeypatch):
    settings.ADCP_BACKUP_ENV_VARS = ["ADCP_T_ONE", "ADCP_T_TWO"]
    monkeypatch.setenv("ADCP_T_ONE", "1")
    monkeypatch.delenv("ADCP_T_TWO", raising=False)
    assert capture_environment()["variables"] == {"ADCP_T_ONE": "1"}


@pytest.mark.parametrize(("value", "on"), [
    ("1", True), ("true", True), ("TRUE", True), ("yes", True), ("On", True),
    ("0", False), ("false", False), ("", False), ("enabled", False),
])
def test_each_feature_flag_is_on_only_for_the_words_that_mean_yes(value, on):
    for variable, flag in (("ENABLE_WEB_CONTEXT", "web_context_enabled"), ("DEBUG", "debug_mode"),
                           ("SKIP_REFERENCE_VALIDATION", "skip_reference_validation")):
        flags = feature_flags({variable: value})
        assert flags == {"web_context_enabled": False, "debug_mode": False, "skip_reference_validation": False,
                         flag: on}


def test_the_native_backup_records_the_feature_flags_of_the_environment(seeded, settings, monkeypatch):
    seeded()
    monkeypatch.setenv("ENABLE_WEB_CONTEXT", "yes")
    monkeypatch.setenv("DEBUG", "0")
    monkeypatch.setenv("SKIP_REFERENCE_VALIDATION", "on")
    result = services.backup_create(compression="none")
    lines = [orjson.loads(line) for line in Path(result.path).read_bytes().splitlines()]
    environment = [line for line in lines if isinstance(line, dict) and line.get("kind") == "environment"]
    assert len(environment) == 1
    assert environment[0]["feature_flags"] == {"web_context_enabled": True, "debug_mode": False,
                                               "skip_reference_validation": True}


# ---------------------------------------------------------------------------------------------------------------
# Secret keys inside settings files.
@pytest.mark.parametrize(("key", "secret"), [
    ("gemini_api_key", True), ("dbPassword", True), ("SMTP_PASS", True), ("smtp.pwd", True), ("sentry-dsn", True),
    ("client_secrets", True), ("tokens", True), ("mySecretValue", True), ("apiKeyHolder", True),
    ("passphrase", True), ("credentials", True),
    ("mypasswordhash", True), ("topsecretvalue", True), ("x_api_key_id", True),
    ("keyboard", False), ("monkey", False), ("passage", False), ("tokenizer", False), ("pass_count", False),
    ("model", False),
])
def test_a_key_names_a_secret_by_its_last_word_or_a_secret_word_inside(key, secret):
    assert is_secret_key(key) is secret


def test_secret_keys_of_json_look_into_nested_objects_and_lists_and_skip_empty_values():
    content = json.dumps({
        "name": "app", "api_key": "k", "empty_token": "", "null_password": None, "false_secret": False,
        "nested": {"db": {"password": "p"}, "list": [{"auth_token": "t"}, {"auth_token": "again"}]},
        "zero_pin_key": 0, "one_pin_key": 1,
    }).encode()
    # 0, like None, "" and False, holds nothing to hide
    assert sorted(secret_keys(content)) == ["api_key", "auth_token", "one_pin_key", "password"]


def test_secret_keys_of_text_files_read_key_value_lines():
    content = b'API_KEY = "abc"\nname: app\nDB_PASSWORD=\nSMTP_PASS: \'\' \nsecret_token: x\nAPI_KEY=again\n'
    assert secret_keys(content) == ["API_KEY", "secret_token"]


def test_a_value_of_only_quotes_commas_and_semicolons_is_empty():
    assert secret_keys(b"API_KEY = '';\nAUTH_TOKEN: ,\nX_SECRET = X\n") == ["X_SECRET"]


def test_secret_keys_look_at_no_more_than_100000_json_values():
    """The secret is the last value looked at: after the outer list and n empty lists."""
    def content(n: int) -> bytes:
        return json.dumps([{"api_key": "k"}] + [[]] * n).encode()

    assert secret_keys(content(99_998)) == ["api_key"]
    assert secret_keys(content(99_999)) == []


def test_secret_keys_of_a_json_file_with_no_secret():
    assert secret_keys(b'{"a": [1, {"b": "c"}], "d": {}}') == []
    assert secret_keys(b"[]") == []


# ---------------------------------------------------------------------------------------------------------------
# Capture.
def test_capture_records_content_and_permission_bits_and_a_missing_file_as_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    private = tmp_path / "data" / "app.json"
    private.write_bytes(b'{"a": 1}\n')
    private.chmod(0o640)
    shared = tmp_path / "data" / "shared.json"
    shared.write_bytes(b"{}")
    shared.chmod(0o4755)  # setuid and execute bits are on the disk; capture keeps the permission bits
    outside = tmp_path.parent / f"{tmp_path.name}-outside.json"
    outside.write_bytes(b"x")
    outside.chmod(0o600)
    try:
        captured = capture_files([private, shared, tmp_path / "data" / "gone.json",
                                  private / "not-a-folder.json", outside])
    finally:
        outside.unlink()
    assert captured == [
        CapturedFile("data/app.json", b'{"a": 1}\n', 0o640),
        CapturedFile("data/shared.json", b"{}", 0o755),
        CapturedFile("data/gone.json", None, None),
        CapturedFile("data/app.json/not-a-folder.json", None, None),
        CapturedFile(str(outside), b"x", 0o600),
    ]


def test_capture_reads_the_configured_files_by_default(settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "one.json").write_bytes(b"1")
    (tmp_path / "one.json").chmod(0o600)
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(tmp_path / "one.json"), str(tmp_path / "two.json")]
    assert capture_files() == [CapturedFile("one.json", b"1", 0o600), CapturedFile("two.json", None, None)]


def test_a_settings_file_that_cannot_be_read_stops_the_backup_with_one_sentence(tmp_path):
    folder = tmp_path / "app.json"
    folder.mkdir()
    with pytest.raises(BackupError) as caught:
        capture_files([folder])
    assert str(caught.value) == f"Cannot read the settings file {folder}: Is a directory."


def test_withholding_keeps_secret_files_out_and_says_why(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    secret = tmp_path / "secret.json"
    secret.write_bytes(json.dumps({f"key{n}_token": "t" for n in range(12)}).encode())
    plain = tmp_path / "plain.json"
    plain.write_bytes(b'{"name": "x"}')
    plain.chmod(0o644)
    keys = ", ".join(f"key{n}_token" for n in range(10))
    assert capture_files([secret, plain, tmp_path / "none.json"], withhold_secrets=True) == [
        CapturedFile("secret.json", None, None,
                     withheld=f"it holds secret-looking keys ({keys}) and the backup is not encrypted"),
        CapturedFile("plain.json", b'{"name": "x"}', 0o644),
        CapturedFile("none.json", None, None),
    ]
    assert capture_files([secret], withhold_secrets=False)[0].withheld is None
    assert capture_files([secret])[0] == CapturedFile("secret.json", secret.read_bytes(), secret.stat().st_mode & 0o777)


def test_a_missing_settings_file_at_backup_time_is_recorded_and_left_alone_at_restore(seeded, backup_env, settings,
                                                                                      tmp_path):
    seeded()
    present, missing = tmp_path / "cfg" / "present.json", tmp_path / "cfg" / "missing.json"
    present.parent.mkdir()
    present.write_bytes(b'{"v": 1}')
    present.chmod(0o640)
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(present), str(missing)]
    created = services.backup_create(compression="none")
    records = [orjson.loads(line) for line in Path(created.path).read_bytes().splitlines()]
    assert [r for r in records if isinstance(r, dict) and r.get("kind") == "file"] == [
        {"kind": "file", "path": "cfg/present.json", "size": 8, "mode": 0o640,
         "sha256": hashlib.sha256(b'{"v": 1}').hexdigest(), "content_b64": "eyJ2IjogMX0="},
        {"kind": "file", "path": "cfg/missing.json", "missing": True},
    ]
    missing.write_bytes(b"created after the backup")
    result = services.backup_restore(file=created.path, safety_backup=False)
    assert {f["path"]: f["action"] for f in result.files} == {
        str(present): "unchanged", str(missing): "left alone: the file did not exist at backup time"}
    assert missing.read_bytes() == b"created after the backup"


# ---------------------------------------------------------------------------------------------------------------
# Where a recorded file goes, and with which mode.
def test_a_recorded_path_goes_to_the_configured_file_of_that_path_else_of_that_name(tmp_path, monkeypatch):
    a, b = tmp_path / "conf" / "app.json", tmp_path / "other" / "app.json"
    tenant = tmp_path / "conf" / "tenant.json"
    configured = [a, b, tenant]
    monkeypatch.chdir(tmp_path)
    assert target_for("other/app.json", configured) == b  # the same path beats the same name
    assert target_for("conf/./app.json", configured) == a
    assert target_for(str(b), configured) == b
    assert target_for("/elsewhere/tenant.json", configured) == tenant  # a path that is not configured: by name
    assert target_for("unknown.json", configured) is None
    assert target_for("", configured) is None
    assert target_for("a\x00b", configured) is None
    assert target_for("a\x7fb", configured) is None
    assert target_for("x" * 4097, configured) is None
    assert target_for(b"conf/app.json", configured) is None
    assert target_for(None, configured) is None
    assert target_for("/", configured) is None  # no name to match


def test_a_restore_from_another_working_folder_writes_the_configured_file(tmp_path, monkeypatch, settings):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    target = project / "data" / "app_settings.json"
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(target)]
    monkeypatch.chdir(project)
    record = FileRecord(path="data/app_settings.json", content=b"new", mode=0o640)  # as a backup taken here
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    assert write_records([record], dry_run=False) == [{"path": str(target), "action": "written"}]
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert list((elsewhere / "data").iterdir()) == []


def test_the_mode_restored_is_the_recorded_one_without_execute_or_special_bits(tmp_path):
    existing = tmp_path / "existing.json"
    existing.write_bytes(b"")
    existing.chmod(0o640)
    assert applied_mode(0o600, existing) == 0o600
    assert applied_mode(0o777, existing) == 0o666
    assert applied_mode(0o4755, existing) == 0o644
    assert applied_mode(True, existing) == 0o640  # not an integer: the existing file's bits
    assert applied_mode(None, existing) == 0o640
    assert applied_mode("0o600", existing) == 0o640
    assert applied_mode(None, tmp_path / "new.json") == 0o600  # neither: private


@pytest.mark.parametrize(("recorded", "existing", "expected"), [
    (0o640, None, 0o640),
    (0o600, 0o644, 0o600),
    (0o777, None, 0o666),
    (0o2775, 0o600, 0o664),
    (None, 0o604, 0o604),
    (None, None, 0o600),
])
def test_write_records_applies_the_mode(tmp_path, monkeypatch, settings, recorded, existing, expected):
    target = tmp_path / "app.json"
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(target)]
    if existing is not None:
        target.write_bytes(b"old")
        target.chmod(existing)
    monkeypatch.chdir(tmp_path)
    report = write_records([FileRecord(path="app.json", content=b"new", mode=recorded)], dry_run=False,
                           restored={"t": 1})
    assert report == [{"path": str(target), "action": "written"}]
    assert (target.read_bytes(), stat.S_IMODE(target.stat().st_mode)) == (b"new", expected)


def test_capture_then_restore_keeps_the_mode(tmp_path, monkeypatch, settings):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "app.json"
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(target)]
    target.write_bytes(b"v1")
    target.chmod(0o640)
    captured = capture_files([target])[0]
    target.write_bytes(b"v2")
    target.chmod(0o666)
    record = FileRecord(path=captured.path, content=captured.content, mode=captured.mode)
    write_records([record], dry_run=False)
    assert (target.read_bytes(), stat.S_IMODE(target.stat().st_mode)) == (b"v1", 0o640)


def test_write_atomically_masks_the_mode_or_keeps_the_existing_files(tmp_path):
    target = tmp_path / "deep" / "er" / "app.json"
    write_atomically(target, b"one", 0o777)
    assert (target.read_bytes(), stat.S_IMODE(target.stat().st_mode)) == (b"one", 0o666)
    target.chmod(0o604)
    write_atomically(target, b"two")
    assert (target.read_bytes(), stat.S_IMODE(target.stat().st_mode)) == (b"two", 0o604)
    new = tmp_path / "new.json"
    write_atomically(new, b"three")
    assert (new.read_bytes(), stat.S_IMODE(new.stat().st_mode)) == (b"three", 0o600)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["app.json", "deep", "er", "new.json"]


def test_the_temporary_file_is_made_beside_the_target_on_its_file_system(tmp_path):
    """/dev/shm is another file system than the temporary folder: a rename across the two would fail."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a file system of its own")
    folder = shm / f"adcp-settings-test-{os.getpid()}"
    folder.mkdir()
    try:
        write_atomically(folder / "app.json", b"content", 0o600)
        assert sorted(p.name for p in folder.iterdir()) == ["app.json"]
        assert (folder / "app.json").read_bytes() == b"content"
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def test_a_failed_replace_removes_the_temporary_file_and_keeps_the_target(tmp_path):
    target = tmp_path / "app.json"
    target.mkdir()  # a folder where the file should go: the rename fails
    (target / "inside").write_bytes(b"kept")
    with pytest.raises(OSError):
        write_atomically(target, b"new", 0o600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.json"]
    assert (target / "inside").read_bytes() == b"kept"


def test_a_fifo_in_a_settings_files_place_is_replaced_without_being_read(tmp_path, monkeypatch, settings):
    """Only a regular file's content is compared before writing: opening a FIFO to read it would wait for a
    writer that never comes, and the restore would hang after its commit."""
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "app.json"
    os.mkfifo(target)
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(target)]
    reports: list[list[dict[str, str]]] = []
    record = FileRecord(path="app.json", content=b"new", mode=0o640)
    worker = threading.Thread(target=lambda: reports.append(write_records([record], dry_run=False)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    hung = worker.is_alive()
    if hung:  # a reader waits in open() for a writer: be that writer, so that the thread ends with the test
        os.close(os.open(target, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=10)
    assert not hung
    assert reports == [[{"path": str(target), "action": "written"}]]
    assert stat.S_ISREG(target.stat().st_mode) and target.read_bytes() == b"new"


def test_write_records_reports_every_case(tmp_path, monkeypatch, settings):
    monkeypatch.chdir(tmp_path)
    names = ["same", "withheld", "missing", "new", "unreadable", "later"]
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(tmp_path / f"{n}.json") for n in names]
    (tmp_path / "same.json").write_bytes(b"same")
    (tmp_path / "withheld.json").write_bytes(b"old")
    (tmp_path / "unreadable.json").mkdir()  # not a file: read as absent, and the write fails
    records = [
        FileRecord(path="stranger.json", content=b"x"),
        FileRecord(path="same.json", content=b"same"),
        FileRecord(path="withheld.json", content=None, withheld="it holds secrets"),
        FileRecord(path="missing.json", content=None),
        FileRecord(path="new.json", content=b"new", mode=0o640),
        FileRecord(path="later.json", content=b"later"),
    ]
    expected_dry = [
        {"path": "stranger.json", "action": "skipped: not a configured settings file"},
        {"path": str(tmp_path / "same.json"), "action": "unchanged"},
        {"path": str(tmp_path / "withheld.json"),
         "action": "left alone: withheld from the backup, as it holds secrets"},
        {"path": str(tmp_path / "missing.json"), "action": "left alone: the file did not exist at backup time"},
        {"path": str(tmp_path / "new.json"), "action": "would be written"},
        {"path": str(tmp_path / "later.json"), "action": "would be written"},
    ]
    assert write_records(records, dry_run=True) == expected_dry
    assert not (tmp_path / "new.json").exists() and not (tmp_path / "later.json").exists()
    assert write_records(records, dry_run=False) == [*expected_dry[:4],
                                                     {"path": str(tmp_path / "new.json"), "action": "written"},
                                                     {"path": str(tmp_path / "later.json"), "action": "written"}]
    assert (tmp_path / "withheld.json").read_bytes() == b"old"
    with pytest.raises(SettingsFilesNotWritten) as caught:
        write_records([FileRecord(path="unreadable.json", content=b"x"), FileRecord(path="new.json", content=b"2")],
                      dry_run=False, name="b.jsonl", restored={"tenant": 2})
    error = caught.value
    unreadable = str(tmp_path / "unreadable.json")
    assert (error.name, error.failed, error.restored) == ("b.jsonl", {unreadable: "Is a directory"}, {"tenant": 2})
    assert error.files == [{"path": unreadable, "action": "NOT written: Is a directory"},
                           {"path": str(tmp_path / "new.json"), "action": "written"}]
    assert (tmp_path / "new.json").read_bytes() == b"2"
    with pytest.raises(SettingsFilesNotWritten) as unnamed:
        write_records([FileRecord(path="unreadable.json", content=b"x")], dry_run=False)
    assert (str(unnamed.value), unnamed.value.restored) == (
        "The database WAS restored from the backup and committed, but these settings files were not written and "
        f"still hold their previous content: {unreadable} (Is a directory). Fix the cause and restore them, for "
        "example by running the same restore again.", {})


# ---------------------------------------------------------------------------------------------------------------
# Sound records.
def record(path: str = "app.json", content: bytes | None = b"{}", **fields: object) -> FileRecord:
    return FileRecord(path=path, content=content, **fields)  # type: ignore[arg-type]


def test_record_checker_accepts_sound_records_and_names_each_problem(tmp_path):
    configured = [tmp_path / "app.json", tmp_path / "tenant.json"]
    sha = hashlib.sha256(b"{}").hexdigest()
    checker = RecordChecker(configured)
    assert checker.check(record(sha256=sha, size=2, mode=0o600)) == []
    assert checker.check(record("tenant.json", None)) == []
    assert checker.check(record("tenant.json", b"x")) == [
        Problem("file tenant.json", f"a second record for {tmp_path / 'tenant.json'} (the first was tenant.json)")]
    never = "setuid, setgid, sticky or file-type bits are never restored"
    cases = [
        (record("x" * 4097), [Problem("file " + repr("x" * 4097)[:77] + "...",
                                      "the path is not a plain file path (empty, too long, or holding a NUL or "
                                      "another control character)")]),
        (record(""), [Problem("file ''", "the path is not a plain file path (empty, too long, or holding a NUL or "
                                         "another control character)")]),
        (record(7), [Problem("file 7", "the path is not a plain file path (empty, too long, or holding a NUL or "
                                       "another control character)")]),
        (record("other.json"), [Problem("file other.json", "not one of the configured settings files "
                                                           "(ADCP_BACKUP_SETTINGS_FILES: app.json, tenant.json)")]),
        (record(content="text"), [Problem("file app.json", "the content is not bytes")]),
        (record(mode="0600"), [Problem("file app.json", "the mode should be an integer, not str '0600'")]),
        (record(mode=True), [Problem("file app.json", "the mode should be an integer, not bool True")]),
        (record(mode=0o4600), [Problem("file app.json", f"the mode 0o4600 is not permission bits (0 to 0o777): "
                                                        f"{never}")]),
        (record(mode=-1), [Problem("file app.json", f"the mode -0o1 is not permission bits (0 to 0o777): {never}")]),
        (record(mode=1 << 70), [Problem("file app.json", f"the mode {str(1 << 70)[:20]}... (a 71-bit number) is not "
                                                         "permission bits (0 to 0o777): setuid, setgid, sticky or "
                                                         "file-type bits are never restored")]),
        (record(mode=0o377), [Problem("file app.json", "the mode 0o377 would leave the file unreadable by its owner")]),
        (record(size=3), [Problem("file app.json", "the recorded size 3 differs from the content's 2 bytes")]),
        (record(size="2"), [Problem("file app.json", "the recorded size '2' differs from the content's 2 bytes")]),
        (record(sha256="0" * 64), [Problem("file app.json", "checksum mismatch: the file's content was changed or "
                                                            "damaged")]),
    ]
    for bad, problems in cases:
        assert RecordChecker(configured).check(bad) == problems, bad
    # a shown value is cut after 77 characters only when its repr is longer than 80
    assert RecordChecker(configured).check(record(mode="m" * 78)) == [
        Problem("file app.json", "the mode should be an integer, not str '" + "m" * 78 + "'")]
    assert RecordChecker(configured).check(record(mode="m" * 79)) == [
        Problem("file app.json", "the mode should be an integer, not str '" + "m" * 76 + "...")]
    # a mode is shown in octal below 2**64, by its first digits and size from there
    assert RecordChecker(configured).check(record(mode=(1 << 64) - 1)) == [
        Problem("file app.json", f"the mode {oct((1 << 64) - 1)} is not permission bits (0 to 0o777): {never}")]
    assert RecordChecker(configured).check(record(mode=-(1 << 64))) == [
        Problem("file app.json", f"the mode -1844674407370955161... (a 65-bit number) is not permission bits "
                                 f"(0 to 0o777): {never}")]
    assert RecordChecker(configured).check(record(mode=0o400, size=2)) == []
    assert RecordChecker(configured).check(record(mode=0o777)) == []
    # the bounds of a plain path: 1 to 4096 characters, a space is fine, a control character is not
    unconfigured = "not one of the configured settings files (ADCP_BACKUP_SETTINGS_FILES: app.json, tenant.json)"
    plain = "the path is not a plain file path (empty, too long, or holding a NUL or another control character)"
    for path in ("a", "a b", "x" * 4096):
        assert RecordChecker(configured).check(record(path)) == [Problem(f"file {path}", unconfigured)]
    assert RecordChecker(configured).check(record("a\x1fb")) == [Problem("file 'a\\x1fb'", plain)]
    assert RecordChecker(configured).check(record("a\x7fb")) == [Problem("file 'a\\x7fb'", plain)]
    assert RecordChecker(configured).check(record(mode=0o1000)) == [
        Problem("file app.json", f"the mode 0o1000 is not permission bits (0 to 0o777): {never}")]
    # a record is read by attribute, and a missing one counts as absent
    assert RecordChecker(configured).check(SimpleNamespace(path="app.json")) == []
    assert RecordChecker(configured).check(SimpleNamespace(path="app.json", content=b"{}")) == []
    assert RecordChecker(configured).check(SimpleNamespace(content=b"{}")) == [
        Problem("file None", "the path is not a plain file path (empty, too long, or holding a NUL or another "
                             "control character)")]
    assert RecordChecker(configured).check(record(mode=0)) == [
        Problem("file app.json", "the mode 0o0 would leave the file unreadable by its owner")]


def test_check_records_finds_a_second_record_for_the_same_file(tmp_path):
    configured = [tmp_path / "app.json"]
    assert check_records([record(), record("elsewhere/app.json")], configured) == [
        Problem("file elsewhere/app.json", f"a second record for {tmp_path / 'app.json'} (the first was app.json)")]
    assert RecordChecker(configured).check(record("elsewhere/app.json")) == []


def test_a_checker_without_a_list_judges_records_against_the_configured_files(settings, tmp_path):
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(tmp_path / "app.json")]
    assert RecordChecker().check(record("app.json")) == []
    assert RecordChecker().check(record("other.json")) == [
        Problem("file other.json", "not one of the configured settings files (ADCP_BACKUP_SETTINGS_FILES: app.json)")]


def test_unwritable_targets_names_each_file_that_cannot_be_replaced(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "somewhere.json")
    folder = tmp_path / "folder.json"
    folder.mkdir()
    same = tmp_path / "same.json"
    same.write_bytes(b"same")
    blocked = tmp_path / "file-not-folder"
    blocked.write_bytes(b"")
    under_file = blocked / "deeper" / "app.json"
    fresh = tmp_path / "new" / "deeper" / "fresh.json"
    configured = [link, folder, same, under_file, fresh]
    records = [record("unknown.json"), record("same.json", None), SimpleNamespace(content=b"x"),
               SimpleNamespace(path="same.json"), record("link.json"), record("folder.json"),
               record("same.json", b"same"), record(str(under_file)), record("fresh.json")]
    assert unwritable_targets(records, configured) == {
        str(link): "it is not a regular file",
        str(folder): "it is not a regular file",
        str(under_file): f"{blocked} is not a folder",
    }


def test_a_file_that_cannot_be_read_or_a_folder_no_one_may_write_is_named_before_the_restore():
    """/proc/self is a folder even root may not write in; reading /proc/self/mem from its start fails."""
    proc = Path("/proc/self")
    if not proc.is_dir() or os.access(proc, os.W_OK):
        pytest.skip("needs Linux's /proc")
    comm, mem, new = proc / "comm", proc / "mem", proc / "app.json"
    configured = [comm, mem, new]
    assert unwritable_targets([record("mem"), record("app.json"), record("comm", comm.read_bytes())], configured) \
        == {str(mem): "it cannot be read (Input/output error)", str(new): "the folder /proc/self is not writable"}
    assert unwritable_targets([record("comm", b"another name\n")], configured) == {
        str(comm): "the folder /proc/self is not writable"}


def test_a_read_only_folder_cannot_take_a_restored_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert unwritable_targets([record("app.json")], [folder / "app.json"]) == {
            str(folder / "app.json"): f"the folder {folder} is not writable"}
    finally:
        folder.chmod(0o700)


def test_refuse_unsound_raises_at_the_first_bad_record_or_unwritable_target(tmp_path):
    configured = [tmp_path / "app.json", tmp_path / "dir.json"]
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(InvalidBackup) as invalid:
        settings_files.refuse_unsound([record(), record("x.json")], RecordChecker(configured))
    assert invalid.value.problems == [Problem("file x.json", "not one of the configured settings files "
                                                             "(ADCP_BACKUP_SETTINGS_FILES: app.json, dir.json)")]
    with pytest.raises(RestoreError) as unwritable:
        settings_files.refuse_unsound([record("dir.json")], RecordChecker(configured))
    assert str(unwritable.value) == ("The settings files cannot be written, so nothing was restored: "
                                     f"{tmp_path / 'dir.json'}: it is not a regular file.")
    settings_files.refuse_unsound([record("dir.json")], RecordChecker(configured), targets=False)
