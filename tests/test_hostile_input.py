"""Hostile backup files with valid checksums: settings-file records and bounded reading.

Every file here is rebuilt with tests/forge.py, so each checksum, count and the trailer still match: what refuses it
is the content check, not the integrity check. Each refusal is shown to leave the AdCP tables, the Django tables,
the settings files (bytes and modes) and the rest of the file system as they were.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import stat
import subprocess
from base64 import b64encode
from collections.abc import Callable, Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections, transaction
from django.urls import reverse

from adcp_backup import services
from adcp_backup.exceptions import SettingsFilesNotWritten
from adcp_backup.format.events import FileRecord
from adcp_backup.reading import open_backup
from tests import forge
from tests.helpers import engine_aliases, table_state
from tests.legacy_fixtures import v2_document

ENGINES = engine_aliases()
pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")
APP = "data/app_settings.json"


# -- helpers -----------------------------------------------------------------------------------------------
def run(*args: str, stderr: io.StringIO | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), stderr if stderr is not None else io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
        code = 0
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    return code, out.getvalue(), err.getvalue()


def tree(root: Path, *, backups: bool = True) -> dict[str, tuple[bytes | None, int]]:
    """Every file and folder below ``root``, with the backup folder unless ``backups`` is false: content and
    full st_mode."""
    state: dict[str, tuple[bytes | None, int]] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not backups and relative.parts[0] == "backups":
            continue
        info = path.lstat()
        state[str(relative)] = (path.read_bytes() if stat.S_ISREG(info.st_mode) else None, info.st_mode)
    return state


def django_state() -> list[tuple[Any, ...]]:
    """The users and their rights (the app's own job history grows with each command and is not compared)."""
    return list(User.objects.order_by("pk").values_list("pk", "username", "password", "is_staff", "is_superuser"))


def problem_messages(report: dict[str, Any]) -> str:
    return " | ".join(f"{p['section']}: {p['message']}" for p in report["problems"])


@pytest.fixture
def made(seeded: Callable[..., dict[str, int]], backup_env: Path) -> Callable[[str], dict[str, Any]]:
    """Call with an alias: its database seeded, a backup of it, then the data and settings files changed,
    so that a restore that went through would change both. Returns the backup's path and its lines."""

    def make(alias: str = "default") -> dict[str, Any]:
        seeded(alias)
        backup = services.backup_create(database=alias, compression="none")
        with connections[alias].cursor() as cursor:
            cursor.execute("UPDATE product SET name = 'changed since the backup' WHERE id < 5")
        for name in ("app_settings.json", "tenant_settings.json"):
            (backup_env / "data" / name).write_bytes(b'{"changed": "since the backup"}\n')
        User.objects.create_user("bystander", password="unchanged")
        return {"path": Path(backup.path), "lines": forge.read_lines(backup.path), "alias": alias}

    return make


def edit_app_record(lines: list[forge.Line], **changes: Any) -> list[forge.Line]:
    def edit(record: dict[str, Any]) -> forge.Line:
        return {**record, **changes} if record["path"] == APP else record

    return forge.with_records(lines, "file", edit)


def assert_refused(backup_env: Path, alias: str, file: Path, words: str, *, restore_code: int = 2,
                   before_safety_backup: bool = True) -> None:
    """backup_validate exits 2 naming the problem; the restore and its dry run refuse; nothing changed.

    ``before_safety_backup``: the refusal comes before the safety backup, so even the backup folder is as it
    was; otherwise (a problem found while the rows are read) the restore's safety backup may be there."""
    state, django = table_state(alias), django_state()
    files = tree(backup_env, backups=before_safety_backup)

    code, out, err = run("backup_validate", str(file), "--json")
    assert code == 2, (out, err)
    report = json.loads(out)
    assert report["valid"] is False and words in problem_messages(report), problem_messages(report)

    for extra in (["--dry-run"], ["--force"]):
        code, out, err = run("backup_restore", str(file), "--database", alias, "--json", *extra)
        assert code == restore_code, (extra, out, err)
        refusal = json.loads(out)
        assert words in refusal["error"] + " ".join(p["message"] for p in refusal.get("problems", [])), refusal
        assert "Traceback" not in out + err
        assert table_state(alias) == state
        assert django_state() == django
        assert tree(backup_env, backups=before_safety_backup) == files


# -- settings-file records -----------------------------------------------------------------------------------
HOSTILE_RECORDS: dict[str, tuple[Callable[[list[forge.Line], Path], list[forge.Line]], str]] = {
    "setuid, setgid and world-writable mode": (lambda lines, _: edit_app_record(lines, mode=0o6777),
                                               "is not permission bits"),
    "sticky bit": (lambda lines, _: edit_app_record(lines, mode=0o1644), "is not permission bits"),
    "mode 0": (lambda lines, _: edit_app_record(lines, mode=0), "unreadable by its owner"),
    "negative mode": (lambda lines, _: edit_app_record(lines, mode=-1), "is not permission bits"),
    "64-bit mode": (lambda lines, _: edit_app_record(lines, mode=2**63 - 1), "is not permission bits"),
    "mode as text": (lambda lines, _: edit_app_record(lines, mode="0777"), "should be an integer, not str"),
    "mode as a float": (lambda lines, _: edit_app_record(lines, mode=420.0), "should be an integer, not float"),
    "mode true": (lambda lines, _: edit_app_record(lines, mode=True), "should be an integer, not bool"),
    "mode as a list": (lambda lines, _: edit_app_record(lines, mode=[420]), "should be an integer, not list"),
    # orjson writes no integer beyond 64 bits: the record is written as raw bytes, still checksummed.
    "mode beyond 64 bits": (
        lambda lines, _: forge.with_records(
            lines, "file",
            lambda r: orjson_raw(r, mode="1" + "0" * 40) if r["path"] == APP else r),
        "should be an integer, not float"),
    "NUL in the path": (lambda lines, _: edit_app_record(lines, path="data/app_settings.json\x00.sh"),
                        "not a plain file path"),
    "newline in the path": (lambda lines, _: edit_app_record(lines, path="data/app\nsettings.json"),
                            "not a plain file path"),
    "empty path": (lambda lines, _: edit_app_record(lines, path=""), "not a plain file path"),
    "absolute path outside the configured files": (
        lambda lines, root: edit_app_record(lines, path=str(root / "outside" / "evil.json")),
        "not one of the configured settings files"),
    "relative path climbing out": (
        lambda lines, _: edit_app_record(lines, path="../../../../../../outside/cron"),
        "not one of the configured settings files"),
    "a path of 10,000 characters": (lambda lines, _: edit_app_record(lines, path="a/" * 5000),
                                    "not a plain file path"),
    "size larger than the content": (lambda lines, _: forge.with_records(
        lines, "file", lambda r: {**r, "size": r["size"] + 1} if r["path"] == APP else r),
        "recorded size"),
    "size as text": (lambda lines, _: forge.with_records(
        lines, "file", lambda r: {**r, "size": str(r["size"])} if r["path"] == APP else r),
        "recorded size"),
    "checksum of other content": (lambda lines, _: edit_app_record(lines, sha256=sha256(b"other").hexdigest()),
                                  "checksum mismatch"),
    "the same file twice": (lambda lines, _: list(forge.before_trailer(
        lines, [{**r, "content_b64": b64encode(b"{}\n").decode(), "size": 3, "sha256": sha256(b"{}\n").hexdigest()}
                for r in forge.records(lines, "file") if r["path"] == APP])),
        "a second record"),
}


def orjson_raw(record: dict[str, Any], **raw_fields: str) -> bytes:
    """A record as JSON bytes whose ``raw_fields`` are spliced in as literal JSON numbers."""
    text = json.dumps({k: v for k, v in record.items() if k not in raw_fields})
    extra = ", ".join(f'"{k}": {v}' for k, v in raw_fields.items())
    return (text[:-1] + ", " + extra + "}").encode()


@pytest.mark.parametrize("case", list(HOSTILE_RECORDS))
def test_hostile_settings_file_records_are_invalid_and_never_restored(made, backup_env, tmp_path, case):
    source = made()
    edit, words = HOSTILE_RECORDS[case]
    hostile = forge.write(tmp_path / "hostile.jsonl", edit(source["lines"], tmp_path))
    assert_refused(backup_env, "default", hostile, words)
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize("alias", ENGINES)
@pytest.mark.parametrize("case", ["setuid, setgid and world-writable mode", "NUL in the path",
                                  "absolute path outside the configured files", "mode as text"])
def test_hostile_records_are_refused_on_every_engine(made, backup_env, tmp_path, alias, case):
    source = made(alias)
    edit, words = HOSTILE_RECORDS[case]
    hostile = forge.write(tmp_path / "hostile.jsonl.gz", edit(source["lines"], tmp_path), compress=True)
    assert_refused(backup_env, alias, hostile, words)


def test_a_folder_that_cannot_be_written_refuses_the_restore_before_the_commit(made, backup_env, tmp_path):
    """The settings folder replaced by a file: found before the commit, so nothing at all is restored. The backup
    itself is sound: validation, which judges the file and not this host, calls it valid."""
    source = made()
    data = backup_env / "data"
    data.rename(tmp_path / "data.moved")
    data.write_bytes(b"not a folder")
    state, django, files = table_state(), django_state(), tree(backup_env)
    assert run("backup_validate", str(source["path"]))[0] == 0
    for extra in (["--dry-run"], ["--force"]):
        code, out, err = run("backup_restore", str(source["path"]), "--json", *extra)
        assert code == 1, (out, err)
        error = json.loads(out)["error"]
        assert "nothing was restored" in error and f"{data} is not a folder" in error
        assert table_state() == state and django_state() == django and tree(backup_env) == files


def test_restored_files_get_only_read_and_write_bits(made, backup_env, tmp_path):
    source = made()
    app, tenant = backup_env / "data" / "app_settings.json", backup_env / "data" / "tenant_settings.json"

    def edit(record: dict[str, Any]) -> dict[str, Any]:
        if record["path"] == APP:
            return {**record, "mode": 0o755}  # an executable settings file: restored without the x bits
        record.pop("mode")  # no mode recorded (as in legacy files): the existing file's stays
        return record

    crafted = forge.write(tmp_path / "modes.jsonl", forge.with_records(source["lines"], "file", edit))
    tenant.chmod(0o604)
    assert services.backup_validate(file=str(crafted)).valid
    result = services.backup_restore(file=str(crafted), safety_backup=False)
    assert {f["action"] for f in result.files} == {"written"}
    assert stat.S_IMODE(app.stat().st_mode) == 0o644
    assert stat.S_IMODE(tenant.stat().st_mode) == 0o604
    originals = {r["path"]: r["content_b64"] for r in forge.records(source["lines"], "file")}
    assert b64encode(app.read_bytes()).decode() == originals[APP]


def test_capture_records_only_permission_bits(seeded, backup_env, tmp_path):
    seeded()
    app = backup_env / "data" / "app_settings.json"
    app.chmod(0o6755 | stat.S_ISVTX)
    assert stat.S_IMODE(app.stat().st_mode) & 0o7000  # the special bits are really set on disk
    backup = services.backup_create(compression="none")
    modes = {r["path"]: r["mode"] for r in forge.records(forge.read_lines(backup.path), "file")}
    assert modes[APP] == 0o755
    assert services.backup_validate(file=backup.name).valid


# -- a failure after the commit ------------------------------------------------------------------------------
class AfterCommit(io.StringIO):
    """A progress callback (for the service) and a stderr (for the command, whose progress lines go there) that,
    at its first call inside the restore's transaction, asks Django to run ``action`` right after that
    transaction commits: the file system then changes between the commit and the writing of the settings files."""

    def __init__(self, alias: str, action: Callable[[], None]) -> None:
        super().__init__()
        self.alias, self.action, self.armed = alias, action, False

    def _arm(self) -> None:
        if not self.armed and connections[self.alias].in_atomic_block:
            self.armed = True
            transaction.on_commit(self.action, using=self.alias)

    def write(self, text: str) -> int:
        self._arm()
        return super().write(text)

    def __call__(self, event: Any) -> None:
        self._arm()


def test_a_settings_file_that_cannot_be_written_after_the_commit_exits_3(made, backup_env, tmp_path):
    source = made()
    app = backup_env / "data" / "app_settings.json"
    restored = forge.read_lines(source["path"])
    originals = {r["path"]: r for r in forge.records(restored, "file")}

    def make_target_a_folder() -> None:
        app.unlink()
        app.mkdir()  # the rename onto it fails: "Is a directory"

    watcher = AfterCommit("default", make_target_a_folder)
    code, out, err = run("backup_restore", str(source["path"]), "--force", "--no-safety-backup", "--json",
                         stderr=watcher)
    assert watcher.armed and code == 3, (out, err)
    payload = json.loads(out)
    assert payload["type"] == "SettingsFilesNotWritten" and payload["database_restored"] is True
    assert list(payload["files_not_written"]) == [str(app)]
    assert "Is a directory" in payload["files_not_written"][str(app)]
    assert "WAS restored" in payload["error"] and str(app) in payload["error"]
    assert payload["restored"]["product"] == 60
    # The database holds the backup's rows; the other settings file was written.
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM product WHERE name = 'changed since the backup'")
        assert cursor.fetchone()[0] == 0
    tenant = backup_env / "data" / "tenant_settings.json"
    assert b64encode(tenant.read_bytes()).decode() == originals["data/tenant_settings.json"]["content_b64"]
    assert app.is_dir() and not list(app.iterdir())  # no temporary file left behind
    assert not [p for p in app.parent.iterdir() if p.name.endswith(".tmp")]

    # The same through the service and in plain text.
    app.rmdir()
    app.write_bytes(b"{}\n")
    with pytest.raises(SettingsFilesNotWritten) as excinfo:
        services.backup_restore(file=str(source["path"]), safety_backup=False,
                                progress=AfterCommit("default", make_target_a_folder))
    assert excinfo.value.failed.keys() == {str(app)}
    assert "WAS restored" in str(excinfo.value)


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a real full disk. Needs root; skipped without it, except under CI=true."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root to mount a tmpfs for this test")
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs: {done.stderr}")
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_after_the_commit_exits_3_and_names_the_file(made, backup_env, tmp_path, settings,
                                                                 tiny_filesystem):
    app = backup_env / "data" / "app_settings.json"
    app.write_bytes(json.dumps({"padding": "x" * 200_000}).encode())  # larger than the tiny disk
    source = made()  # the backup holds the large file; now it is small again
    target = tiny_filesystem / "app_settings.json"
    target.write_bytes(b'{"small": true}\n')
    target.chmod(0o640)
    settings.ADCP_BACKUP_SETTINGS_FILES = [str(target), str(backup_env / "data" / "tenant_settings.json")]

    code, out, err = run("backup_restore", str(source["path"]), "--force", "--no-safety-backup", "--json")
    assert code == 3, (out, err)
    payload = json.loads(out)
    assert payload["database_restored"] is True and list(payload["files_not_written"]) == [str(target)]
    assert "No space left on device" in payload["files_not_written"][str(target)]
    assert target.read_bytes() == b'{"small": true}\n' and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tiny_filesystem.iterdir()) == ["app_settings.json"]

    code, out, err = run("backup_restore", str(source["path"]), "--force", "--no-safety-backup")
    assert code == 3 and "WAS restored" in err and str(target) in err and "Traceback" not in err


# -- bounded work --------------------------------------------------------------------------------------------
def test_a_flood_of_problems_keeps_a_hundred_and_counts_the_rest(made, backup_env, tmp_path, settings):
    settings.ADCP_BACKUP_MAX_PROBLEMS = 100
    source = made()
    empty, garbage, pairs = 300_000, 5_000, 20_000
    total = empty + garbage + 2 * pairs

    def flood() -> Iterator[forge.Line]:
        yield from [b""] * empty  # one run: kept once, counted 300,000 times
        yield from [b"x"] * garbage  # one run as well
        for _ in range(pairs):  # runs of one line each: 40,000 problems of which 98 are kept
            yield b"x"
            yield b""

    hostile = forge.write(tmp_path / "flood.jsonl.gz", forge.before_trailer(source["lines"], flood()), compress=True)
    report = services.backup_validate(file=str(hostile))
    assert not report.valid
    assert len(report.problems) == 100
    assert report.problems_total == total  # each line counted, though a run is kept once
    assert report.problems[0].message == f"{empty:,} empty lines"
    assert report.problems[1].message == f"{garbage + 1:,} lines are not valid JSON"  # the first pair's joins
    assert not any("checksum" in p.message for p in report.problems)  # the checksums are valid

    code, out, _ = run("backup_validate", str(hostile))
    assert code == 2 and f"INVALID, {total} problem(s)" in out
    assert f"... and {total - 100} more" in out
    assert_refused(backup_env, "default", hostile, "empty lines", before_safety_backup=False)


@pytest.mark.parametrize("alias", ENGINES)
def test_one_line_longer_than_the_limit_is_refused_with_a_clear_error(made, backup_env, tmp_path, settings, alias):
    source = made(alias)
    settings.ADCP_BACKUP_MAX_LINE_LENGTH = 1 << 20  # the smallest limit: one read chunk

    def huge_description(lines: list[forge.Line]) -> Iterator[forge.Line]:
        seen_product = False
        for line in lines:
            if isinstance(line, dict) and line.get("kind") == "table":
                seen_product = line["name"] == "product"
                columns = [c["name"] for c in line["columns"]]
            elif seen_product and isinstance(line, list) and line[0] == 7:
                line = list(line)
                line[columns.index("description")] = "d" * (3 << 20)
            yield line

    hostile = forge.write(tmp_path / "long.jsonl", huge_description(source["lines"]))
    assert_refused(backup_env, alias, hostile, "longer than 1,048,576 bytes", before_safety_backup=False)

    # The same line under the default limit (64 MiB) reads, and the file is valid.
    settings.ADCP_BACKUP_MAX_LINE_LENGTH = 64 << 20
    assert services.backup_validate(file=str(hostile)).valid


def test_a_long_line_is_read_in_one_pass(tmp_path):
    """A 20 MiB line spread over many reads, fed in small pieces: its content comes back exactly."""
    content = os.urandom(15 << 20)
    record = {"kind": "file", "path": APP, "size": len(content), "mode": 0o600,
              "sha256": sha256(content).hexdigest(), "content_b64": b64encode(content).decode()}
    lines: list[forge.Line] = [{"kind": "header", "format": "adcp-backup", "version": 3, "counts": {}}, record]
    data = b"".join(forge.seal(lines))

    class Trickle(io.RawIOBase):
        """Returns at most 100,000 bytes a read, as a slow network stream would."""

        def __init__(self, data: bytes) -> None:
            self._data = memoryview(data)

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            n = 100_000 if size < 0 else min(size, 100_000)
            piece, self._data = bytes(self._data[:n]), self._data[n:]
            return piece

    with open_backup(Trickle(data)) as reader:
        files = [e for e in reader.events() if isinstance(e, FileRecord)]
    assert files[0].content == content and not reader.problems


def test_deep_nesting_in_a_legacy_file_is_refused_without_a_traceback(made, backup_env, tmp_path):
    source = made()
    document = v2_document(tenant_settings={"deep": "__DEEP__"})
    depth = 200_000
    text = json.dumps(document).replace('"__DEEP__"', "[" * depth + "]" * depth)
    hostile = tmp_path / "adcp_backup_deep.json.gz"
    hostile.write_bytes(gzip.compress(text.encode()))
    assert_refused(backup_env, source["alias"], hostile, "more than 100 levels deep", before_safety_backup=False)


def test_deep_nesting_in_a_native_row_is_refused(made, backup_env, tmp_path):
    source = made()

    def deep(lines: list[forge.Line]) -> Iterator[forge.Line]:
        for line in lines:
            if isinstance(line, list) and line[0] == 1 and len(line) > 3:
                yield b"[1" + b",[" * 100_000 + b"]" * 100_000 + b"]"
                continue
            yield line

    hostile = forge.write(tmp_path / "deep.jsonl", deep(source["lines"]))
    assert_refused(backup_env, "default", hostile, "not valid JSON", before_safety_backup=False)


# -- header fields of the wrong shape ------------------------------------------------------------------------
BAD_HEADERS: dict[str, tuple[dict[str, Any], str]] = {
    "counts with a key named items": ({"counts": {"items": 5}}, "counts names unknown tables"),
    "counts with an unknown table": ({"counts": {"tenant": 4, "evil": 1}}, "(not in the registry): 'evil'"),
    "counts with a null": ({"counts": {"tenant": None, "product": 60}}, "counts of tenant should be a row count"),
    "counts with text": ({"counts": {"tenant": "4"}}, "counts of tenant should be a row count, not str"),
    "counts with a negative count": ({"counts": {"tenant": -1}}, "counts of tenant should be a row count"),
    "counts as a list": ({"counts": [4, 60]}, "counts should be an object"),
    "counts as text": ({"counts": "all"}, "counts should be an object"),
    "created_at a number": ({"created_at": 1700000000}, "created_at should be a date and time in text, not int"),
    "created_at not a date": ({"created_at": "yesterday"}, "created_at is not an ISO 8601"),
    "scope a list": ({"scope": ["acme"]}, "scope should be an object, not list"),
    "scope text": ({"scope": "all"}, "scope should be an object, not str"),
    "scope tenants a number": ({"scope": {"tenants": 5}}, "scope.tenants should be"),
    "purpose an object": ({"purpose": {"safety": True}}, "purpose should be text"),
    "schema a list": ({"schema": ["tenant"]}, "schema should be an object"),
    "schema tables a list": ({"schema": {"tables": ["tenant"], "ddl": []}}, "schema.tables should be an object"),
}


@pytest.mark.parametrize("case", list(BAD_HEADERS))
def test_a_header_of_the_wrong_shape_is_listed_as_invalid_never_a_500(made, backup_env, admin_client, case):
    source = made()
    change, words = BAD_HEADERS[case]
    name = "adcp-backup-20300101-000000-0badhead.jsonl"
    lines = source["lines"]
    forge.write(backup_env / "backups" / name, [{**forge.header(lines), **change}, *lines[1:]])

    entry = next(e for e in services.backup_list() if e.name == name)
    assert entry.error is not None and words in entry.error, entry.error
    assert entry.counts is None and entry.format is None

    code, out, _ = run("backup_list", "--json")
    assert code == 0 and any(b["name"] == name and b["error"] for b in json.loads(out)["backups"])
    code, out, _ = run("backup_info", "--json")
    assert code == 0 and name in json.loads(out)["backups"]["unreadable"]

    page = admin_client.get(reverse("admin:adcp_backup_backupfile_changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert name in html and "unreadable" in html and "Invalid backup: header" in html

    assert_refused(backup_env, "default", backup_env / "backups" / name, words)


def test_a_native_file_is_listed_from_its_header_alone(made, backup_env):
    """Empty counts used to send the listing through the whole file; the header alone describes it now."""
    source = made()
    name = "adcp-backup-20300101-000000-00tailed.jsonl"
    lines = source["lines"]
    path = forge.write(backup_env / "backups" / name, [{**forge.header(lines), "counts": {}}, *lines[1:]])
    with path.open("ab") as f:
        f.write(b'{"kind": "table", "name": "tenant", "columns": []}\n')  # after the trailer: only a full read sees it

    entry = next(e for e in services.backup_list() if e.name == name)
    assert entry.error is None and entry.counts == {} and entry.format == "adcp-backup v3"
    report = services.backup_validate(file=name)
    assert not report.valid and any("follows the trailer" in p.message for p in report.problems)


def _flood(lines: list[forge.Line], _root: Path) -> list[forge.Line]:
    return list(forge.before_trailer(lines, [b"x", b""] * 5_000))


def _deep_row(lines: list[forge.Line], _root: Path) -> list[forge.Line]:
    return [b"[1" + b",[" * 5_000 + b"]" * 5_000 + b"]" if isinstance(line, list) and line[0] == 1 else line
            for line in lines]


def _bad_counts(lines: list[forge.Line], _root: Path) -> list[forge.Line]:
    return [{**forge.header(lines), "counts": {"tenant": None, "items": 1}}, *lines[1:]]


BOUNDS: dict[str, tuple[Callable[[list[forge.Line], Path], list[forge.Line]], str]] = {
    "a flood of problems": (_flood, "a line is not valid JSON"),
    "deep nesting in a row": (_deep_row, "not valid JSON"),
    "counts with a null and an unknown key": (_bad_counts, "counts names unknown tables"),
}


@pytest.mark.parametrize("alias", ENGINES)
@pytest.mark.parametrize("case", list(BOUNDS))
def test_unbounded_files_are_refused_on_every_engine(made, backup_env, tmp_path, alias, case):
    source = made(alias)
    edit, words = BOUNDS[case]
    hostile = forge.write(tmp_path / "hostile.jsonl.gz", edit(source["lines"], tmp_path), compress=True)
    assert_refused(backup_env, alias, hostile, words, before_safety_backup=case.startswith("counts"))


def test_a_tenant_restore_checks_records_but_needs_no_writable_settings_folder(made, backup_env, tmp_path):
    """A tenant restore of a full backup writes no settings file: its folder may be unwritable, but a hostile
    record still makes the file invalid, as validation says."""
    source = made()
    data = backup_env / "data"
    data.rename(tmp_path / "data.moved")
    data.write_bytes(b"not a folder")
    result = services.backup_restore(file=str(source["path"]), tenants=["publisher-3"], safety_backup=False)
    assert result.restored["tenant"] == 1 and result.files == []

    hostile = forge.write(tmp_path / "hostile.jsonl", edit_app_record(source["lines"], mode=0o4755))
    state, files = table_state(), tree(backup_env)
    code, out, err = run("backup_restore", str(hostile), "--tenant", "publisher-3", "--force", "--json")
    assert code == 2 and "is not permission bits" in out, (out, err)
    assert table_state() == state and tree(backup_env) == files
